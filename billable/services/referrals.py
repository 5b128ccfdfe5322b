"""Referrals: who invited whom. One referrer per user, no self-referral, no cycle of two.

Both accounts are locked (ascending primary key, the same order the customer merge uses) before
the rules are checked, so two opposite requests (A invites B, B invites A) cannot both succeed.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction
from django.db.models import Q

from billable.exceptions import InvalidInput, NotFound, ReferralError, UserNotFound
from billable.ledger.locks import lock_users
from billable.ledger.retry import retrying
from billable.models import CustomerMerge, Referral
from billable.signals import referral_attached, send_on_commit
from billable.validation import coerce_pk, metadata_dict

MSG_INVALID_IDS = "Provide valid identifiers"
MSG_REFERRER_MISSING = "Referrer user not found in database"
MSG_REFEREE_MISSING = "Referee user not found in database"
MSG_SAME_USER = "Referrer and referee cannot be same"
MSG_EXISTS = "Relationship exists or invalid IDs"


def _existing_or_refuse(referrer_id: int, referee_id: int) -> Referral | None:
    """The same pair if it already exists; raise when another rule forbids the pair."""
    rows = list(Referral.objects.filter(
        Q(referee_id=referee_id) | Q(referrer_id=referee_id, referee_id=referrer_id)))
    for row in rows:
        if row.referrer_id == referrer_id and row.referee_id == referee_id:
            return row
    if rows:
        raise ReferralError(MSG_EXISTS)
    return None


class ReferralService:
    """Attach referrers to referees and read referral statistics."""

    @classmethod
    @retrying
    def assign_referrer(cls, referrer_id: Any, referee_id: Any, *,
                        metadata: dict[str, Any] | None = None) -> tuple[Referral, bool]:
        """Record that ``referrer_id`` invited ``referee_id``; return ``(referral, created)``.

        Repeating an existing pair returns it with ``created=False``. Raises ``ReferralError``
        ("Provide valid identifiers", "Referrer and referee cannot be same", "Relationship exists
        or invalid IDs" — the referee already has another referrer, the pair would form a
        cycle, or either account was merged into another) and ``UserNotFound`` ("Referrer user
        not found in database" / "Referee …").
        Sends ``referral_attached`` after commit when created.
        """
        referrer = coerce_pk(getattr(referrer_id, "pk", referrer_id))
        referee = coerce_pk(getattr(referee_id, "pk", referee_id))
        if referrer is None or referee is None:
            raise ReferralError(MSG_INVALID_IDS)
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidInput("metadata must be an object")
        metadata = metadata_dict(metadata)
        if referrer == referee:
            raise ReferralError(MSG_SAME_USER)
        with transaction.atomic():
            existing = lock_users([referrer, referee])
            if referrer not in existing:
                raise UserNotFound(MSG_REFERRER_MISSING)
            if referee not in existing:
                raise UserNotFound(MSG_REFEREE_MISSING)
            found = _existing_or_refuse(referrer, referee)
            if found is not None:
                return found, False
            if CustomerMerge.objects.filter(source_user_id__in=[referrer, referee]).exists():
                # An account merged into another is empty and its customer lives on in the
                # target: a new referral of it would refer the same person again (a second
                # bonus once the merge dropped the first row), or credit the emptied account.
                raise ReferralError(MSG_EXISTS)
            try:
                with transaction.atomic():
                    referral = Referral.objects.create(referrer_id=referrer, referee_id=referee,
                                                       metadata=metadata or {})
            except IntegrityError:
                raise ReferralError(MSG_EXISTS) from None
            send_on_commit(referral_attached, sender=cls, referral=referral)
        return referral, True

    @classmethod
    async def aassign_referrer(cls, referrer_id: Any, referee_id: Any, *,
                               metadata: dict[str, Any] | None = None
                               ) -> tuple[Referral, bool]:
        """Async twin of :meth:`assign_referrer`."""
        return await sync_to_async(cls.assign_referrer)(referrer_id, referee_id,
                                                        metadata=metadata)

    @classmethod
    def count_referrals(cls, user_id: Any) -> int:
        """How many users ``user_id`` invited (0 for an unknown or malformed id)."""
        pk = coerce_pk(getattr(user_id, "pk", user_id))
        if pk is None:
            return 0
        return Referral.objects.filter(referrer_id=pk).count()

    @classmethod
    async def acount_referrals(cls, user_id: Any) -> int:
        """Async twin of :meth:`count_referrals`."""
        return await sync_to_async(cls.count_referrals)(user_id)

    @classmethod
    def claim_bonus(cls, referral_id: Any) -> bool:
        """Flip ``bonus_granted`` once: ``True`` only for the first caller (race-safe)."""
        pk = coerce_pk(getattr(referral_id, "pk", referral_id))
        referral = Referral.objects.filter(pk=pk).first() if pk else None
        if referral is None:
            raise NotFound("Referral not found")
        return referral.claim_bonus()

    @classmethod
    async def aclaim_bonus(cls, referral_id: Any) -> bool:
        """Async twin of :meth:`claim_bonus`."""
        return await sync_to_async(cls.claim_bonus)(referral_id)


__all__ = ["ReferralService"]
