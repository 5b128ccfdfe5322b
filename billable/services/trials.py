"""Trials: claim a free offer once per identity, race-safe, built on ``TrialHistory``.

Claim, grant and record are one database transaction: the ``TrialHistory`` rows are inserted
first (the unique ``(identity_type, identity_hash)`` index is the race guard — a concurrent claim
of the same identity waits on it and then fails), then the offer is granted. If anything fails,
nothing is recorded and nothing is granted.

Identities checked and recorded: the ``identities`` given by the caller, or — when none are
given — the user's own external identities; the account itself (``user:<id>``) is always
included, so one billing account claims one trial whatever identities it presents.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from billable.exceptions import InvalidInput, OfferNotFound, TrialAlreadyUsed, UserNotFound
from billable.ledger import grants as granting
from billable.ledger.locks import lock_users
from billable.ledger.retry import retrying
from billable.ledger.spend import require_items
from billable.models import ExternalIdentity, Offer, QuotaBatch, TrialHistory
from billable.models.trials import USER_IDENTITY_TYPE
from billable.signals import send_on_commit, trial_activated
from billable.validation import (
    action_type_text,
    coerce_pk,
    metadata_dict,
    resolve_offer,
    safe_json,
    safe_text,
)

#: Identity type of the always-recorded account identity (``user:<id>``).
_PLAN_NAME_LENGTH = 100


def _identity_pairs(user_id: int, identities: Any) -> list[tuple[str, str]]:
    """Deduplicated ``(identity_type, hash)`` pairs to claim for this user."""
    if identities is not None and not isinstance(identities, dict):
        raise InvalidInput("identities must be an object of {type: value}")
    for kind in identities or {}:
        safe_text(str(kind), field="identity type")
    pairs = TrialHistory.identity_pairs(identities or {})
    if not pairs:
        own = ExternalIdentity.objects.filter(user_id=user_id).values_list(
            "provider", "external_id")
        pairs = [(provider, TrialHistory.generate_identity_hash(value)) for provider, value in own]
    pairs.append((USER_IDENTITY_TYPE, TrialHistory.generate_identity_hash(str(user_id))))
    if any(len(kind) > 50 for kind, _ in pairs):
        raise InvalidInput("identity type must be at most 50 characters")
    return list(dict.fromkeys(pairs))


def _free_offer(sku: Any) -> Offer:
    """The active free offer named by ``sku`` (the one offer rule, ``resolve_offer``)."""
    if not isinstance(sku, Offer) and (not isinstance(sku, str) or not sku.strip()):
        raise InvalidInput("sku is required")
    try:
        offer = resolve_offer(sku)
    except OfferNotFound:
        raise OfferNotFound("Trial offer not found") from None
    if offer.price != 0:
        raise InvalidInput("Only free offers (price 0) can be claimed as a trial")
    return offer


def _record_claims(pairs: list[tuple[str, str]], plan_name: str) -> None:
    """Insert one history row per identity, or raise ``TrialAlreadyUsed`` (nothing written)."""
    rows = [TrialHistory(identity_type=kind, identity_hash=digest, trial_plan_name=plan_name)
            for kind, digest in pairs]
    try:
        with transaction.atomic():
            TrialHistory.objects.bulk_create(rows)
    except IntegrityError:
        raise TrialAlreadyUsed("Trial already used") from None


class TrialService:
    """Race-safe "claim once per identity, then grant" for free trial offers."""

    @classmethod
    def is_eligible(cls, identities: dict[str, Any] | None = None, *,
                    user_id: Any = None) -> bool:
        """True when none of ``identities`` (nor ``user:<user_id>`` if given) claimed a trial."""
        if identities is not None and not isinstance(identities, dict):
            raise InvalidInput("identities must be an object of {type: value}")
        merged = dict(identities or {})
        for kind in merged:
            safe_text(str(kind), field="identity type")
        pk = coerce_pk(user_id)
        pairs = TrialHistory.identity_pairs(merged)
        if pk is not None:
            pairs.append((USER_IDENTITY_TYPE, TrialHistory.generate_identity_hash(str(pk))))
        if not pairs:
            return True
        return not _any_used(pairs)

    @classmethod
    async def ais_eligible(cls, identities: dict[str, Any] | None = None, *,
                           user_id: Any = None) -> bool:
        """Async twin of :meth:`is_eligible`."""
        return await sync_to_async(cls.is_eligible)(identities, user_id=user_id)

    @classmethod
    def claim_trial(cls, user_id: Any, sku: Any, *, identities: dict[str, Any] | None = None,
                    metadata: dict[str, Any] | None = None, plan_name: str | None = None,
                    source: str = "trial_activation") -> list[QuotaBatch]:
        """Grant the free offer ``sku`` once per identity; return the new batches.

        Raises ``TrialAlreadyUsed`` (code ``trial_already_used``), ``OfferNotFound`` (unknown or
        inactive offer), ``InvalidInput`` (paid offer, malformed identities), ``UserNotFound``.
        Sends ``trial_activated(user_id, products)`` after commit.
        """
        pk = coerce_pk(getattr(user_id, "pk", user_id))
        if pk is None or not get_user_model().objects.filter(pk=pk).exists():
            raise UserNotFound(f"User {user_id} not found")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidInput("metadata must be an object")
        offer = _free_offer(sku)
        require_items(offer=offer)
        pairs = _identity_pairs(pk, identities)
        if _any_used(pairs):
            raise TrialAlreadyUsed("Trial already used")
        name = safe_text((plan_name or offer.name)[:_PLAN_NAME_LENGTH], field="plan_name")
        grant_metadata = {**metadata_dict(metadata),
                          "identities": safe_json(identities or {}, field="identities")}
        return _claim(cls, pk, offer, pairs, name, grant_metadata, source)

    @classmethod
    async def aclaim_trial(cls, user_id: Any, sku: Any, *,
                           identities: dict[str, Any] | None = None,
                           metadata: dict[str, Any] | None = None,
                           plan_name: str | None = None,
                           source: str = "trial_activation") -> list[QuotaBatch]:
        """Async twin of :meth:`claim_trial`."""
        return await sync_to_async(cls.claim_trial)(
            user_id, sku, identities=identities, metadata=metadata, plan_name=plan_name,
            source=source)


@retrying
def _claim(sender: Any, pk: int, offer: Offer, pairs: list[tuple[str, str]], name: str,
           metadata: dict[str, Any], source: str) -> list[QuotaBatch]:
    """Lock the account (the global lock order: accounts before trial rows and batches), record
    the claims, grant — one transaction."""
    with transaction.atomic():
        if not lock_users([pk]):
            raise UserNotFound(f"User {pk} not found")
        _record_claims(pairs, name)
        batches = granting.grant_lines(user_id=pk, grants=[(offer, None)],
                                       source=action_type_text(source), metadata=metadata,
                                       now=timezone.now(), user_locked=True)
        products = [batch.product.name for batch in batches]
        send_on_commit(trial_activated, sender=sender, user_id=pk, products=products)
    return batches


def _any_used(pairs: list[tuple[str, str]]) -> bool:
    query = Q()
    for kind, digest in pairs:
        query |= Q(identity_type=kind, identity_hash=digest)
    return TrialHistory.objects.filter(query).exists()


__all__ = ["USER_IDENTITY_TYPE", "TrialService"]
