"""Customer merge: move everything one billing account owns into another, atomically.

Rows are locked in the global lock order of ``billable.ledger.locks`` (orders, accounts,
reservations, batches), so concurrent merges serialise and merges never deadlock with payments,
holds or consumption. Ledgers move whole: batches and their transactions change owner only
(``Transaction.objects…._reassign_owner``); amounts, directions and batches never change, so the
ledger invariant holds before and after. Trial history is only ever added to: if the merged
customer used a trial, both accounts and all their identities stay "trial used". The source
account itself is kept (empty), as in 0.2.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from billable.exceptions import IdentityConflict, MergeError, RetryTransaction, UserNotFound
from billable.ledger import periods
from billable.ledger.locks import lock_users
from billable.ledger.retry import retrying
from billable.models import (
    CustomerMerge,
    ExternalIdentity,
    Gift,
    IdempotencyKey,
    Order,
    Product,
    PromoIdentityUse,
    PromoRedemption,
    QuotaBatch,
    Referral,
    Reservation,
    Transaction,
    TrialHistory,
)
from billable.models.trials import USER_IDENTITY_TYPE
from billable.signals import customers_merged, send_on_commit
from billable.validation import coerce_pk

logger = logging.getLogger("billable.customers")


def _lock_both(target: int, source: int) -> None:
    """Lock in the global order (``billable.ledger.locks``): the source's orders, both
    accounts, the source's reservations, then the source's batches — each by ascending pk.

    Accounts are locked ``FOR NO KEY UPDATE``: concurrent merges serialise, while ledger writes
    that only reference the account (foreign-key checks) are not blocked. Locking the batches
    here also waits for consumers of the source to finish, so everything they wrote moves too.
    """
    list(Order.objects.select_for_update().filter(user_id=source).order_by("pk")
         .values_list("pk", flat=True))
    existing = lock_users([target, source])
    if target not in existing:
        raise UserNotFound(f"Target user {target} does not exist.")
    if source not in existing:
        raise UserNotFound(f"Source user {source} does not exist.")
    holds = list(Reservation.objects.select_for_update(no_key=True).filter(user_id=source)
                 .order_by("id").values_list("pk", flat=True))
    list(QuotaBatch.objects.select_for_update(no_key=True).filter(user_id=source).order_by("id")
         .values_list("pk", flat=True))
    if Reservation.objects.filter(user_id=source).exclude(pk__in=holds).exists():
        # A hold was placed between the two lock statements; whoever settles it locks it
        # before the batches we now hold. Give everything back and start again.
        raise RetryTransaction("a hold of the source appeared while locking")


def _chain_periods(target: int, source: int, now: datetime) -> int:
    """Queue the source's remaining periods after the target's access; return how many moved.

    A period bought while access runs extends it (SPEC §3), so the merged customer keeps the
    time both accounts paid for: for each period product the target has running or queued
    access to, the source's active periods (running ones from now on) follow it one after the
    other, keeping their lengths. Without this both accounts' periods overlapped after the
    merge: 30 days of access for two 30-day purchases. The accounts are locked, so no grant or
    refund of a period changes either chain meanwhile; the source's batches are locked too.
    """
    running = QuotaBatch.objects.filter(state=QuotaBatch.State.ACTIVE, expires_at__gt=now,
                                        product__product_type=Product.ProductType.PERIOD)
    ends = dict(running.filter(user_id=target).order_by().values("product_id")
                .annotate(end=Max("expires_at")).values_list("product_id", "end"))
    if not ends:
        return 0
    moved = list(running.filter(user_id=source, product_id__in=list(ends))
                 .order_by("valid_from", "id"))
    for batch in moved:
        assert batch.expires_at is not None
        length = batch.expires_at - max(batch.valid_from, now)
        start = ends[batch.product_id]
        try:
            end = min(start + length, periods.FAR_FUTURE)
        except OverflowError:
            end = periods.FAR_FUTURE
        batch.valid_from, batch.expires_at = start, end
        ends[batch.product_id] = end
    QuotaBatch.objects.bulk_update(moved, ["valid_from", "expires_at"])
    return len(moved)


def _move_identities(target: int, source: int) -> int:
    """Move the source identities; refuse a provider both accounts hold with different ids."""
    target_ids: dict[str, set[str]] = {}
    for provider, external_id in ExternalIdentity.objects.filter(user_id=target).values_list(
            "provider", "external_id"):
        target_ids.setdefault(provider, set()).add(external_id)
    moving = list(ExternalIdentity.objects.filter(user_id=source).values_list(
        "provider", "external_id"))
    for provider, external_id in moving:
        if provider in target_ids and external_id not in target_ids[provider]:
            raise IdentityConflict(
                "Identity conflict: both users have different external_ids for provider "
                f"{provider}."
            )
    return ExternalIdentity.objects.filter(user_id=source).update(user_id=target)


def _copy_idempotency_keys(target: int, source: int) -> None:
    """Give the target a copy of the source's keys; the source keeps its own.

    A retry under a used key must replay wherever it arrives: at the target, where the merged
    customer now lives, and at the source, which a caller may still name (a retry queued
    before the merge). Moving the rows left the source without them, so such a retry was a
    new request: a keyed grant granted again, a keyed consume charged again. A key both
    accounts used keeps each account's own row.
    """
    IdempotencyKey.objects.bulk_create(
        [IdempotencyKey(user_id=target, key=row.key, operation=row.operation,
                        fingerprint=row.fingerprint, result=row.result,
                        created_at=row.created_at)
         for row in IdempotencyKey.objects.filter(user_id=source).exclude(
             key__in=IdempotencyKey.objects.filter(user_id=target).values("key"))],
        ignore_conflicts=True,
    )


def _referrals_to_drop(rows: list[Referral], target: int, source: int) -> set[int]:
    """Rows that would become a self-referral, a second referrer or a cycle after the move."""
    target_referrer = (Referral.objects.filter(referee_id=target)
                       .values_list("referrer_id", flat=True).first())
    target_referees = set(Referral.objects.filter(referrer_id=target)
                          .values_list("referee_id", flat=True))
    drop = set()
    for row in rows:
        if target in (row.referrer_id, row.referee_id):
            drop.add(row.pk)
        elif row.referee_id == source and (target_referrer is not None
                                           or row.referrer_id in target_referees):
            drop.add(row.pk)
        elif row.referrer_id == source and row.referee_id == target_referrer:
            drop.add(row.pk)
    return drop


def _move_referrals(target: int, source: int) -> int:
    """Move referrals on both sides; count every source referral (moved or resolved away)."""
    rows = list(Referral.objects.select_for_update()
                .filter(Q(referrer_id=source) | Q(referee_id=source)).order_by("pk"))
    if not rows:
        return 0
    drop = _referrals_to_drop(rows, target, source)
    if drop:
        Referral.objects.filter(pk__in=drop).delete()
    remaining = Referral.objects.exclude(pk__in=drop)
    remaining.filter(referrer_id=source).update(referrer_id=target)
    remaining.filter(referee_id=source).update(referee_id=target)
    return len(rows)


def _move_growth(target: int, source: int) -> None:
    """Promo redemptions and gifts follow the customer; a code the source account used (by
    its account, not only by an identity that moves with it) stays used for the target."""
    PromoRedemption.objects.filter(user_id=source).update(user_id=target)
    # A gift one account bought and the other claimed would name the merged customer twice,
    # which its CHECK (a buyer never claims their own gift) refuses: such a gift keeps the
    # merged-away account in that field, the record of who claimed (or bought) it.
    Gift.objects.filter(buyer_id=source).exclude(claimed_by_id=target).update(buyer_id=target)
    Gift.objects.filter(claimed_by_id=source).exclude(buyer_id=target).update(
        claimed_by_id=target)
    source_hash = TrialHistory.generate_identity_hash(str(source))
    target_hash = TrialHistory.generate_identity_hash(str(target))
    uses = PromoIdentityUse.objects.filter(identity_type=USER_IDENTITY_TYPE,
                                           identity_hash=source_hash)
    PromoIdentityUse.objects.bulk_create(
        [PromoIdentityUse(promo_id=use.promo_id, redemption_id=use.redemption_id,
                          identity_type=USER_IDENTITY_TYPE, identity_hash=target_hash)
         for use in uses],
        ignore_conflicts=True,
    )


def _trial_pairs(user_ids: tuple[int, ...]) -> list[tuple[str, str]]:
    """The trial identities of the merged customer: both accounts and every identity they hold
    (after the move, all of them belong to the target)."""
    pairs = [(USER_IDENTITY_TYPE, TrialHistory.generate_identity_hash(str(pk)))
             for pk in user_ids]
    identities = ExternalIdentity.objects.filter(user_id__in=user_ids).values_list(
        "provider", "external_id")
    pairs += [(provider, TrialHistory.generate_identity_hash(value))
              for provider, value in identities]
    return list(dict.fromkeys(pairs))


def _reconcile_trials(target: int, source: int) -> None:
    """If the merged customer used a trial, every account and identity involved stays "used".

    Nothing is deleted or renamed (the 0.2-era rename let the emptied source claim again, and
    the next merge moved that second trial over): the missing history rows are added for both
    accounts and all their identities, with the plan name of the earliest claim.
    """
    pairs = _trial_pairs((target, source))
    query = Q()
    for kind, digest in pairs:
        query |= Q(identity_type=kind, identity_hash=digest)
    used = TrialHistory.objects.filter(query).order_by("used_at", "id").first()
    if used is None:
        return
    TrialHistory.objects.bulk_create(
        [TrialHistory(identity_type=kind, identity_hash=digest,
                      trial_plan_name=used.trial_plan_name) for kind, digest in pairs],
        ignore_conflicts=True,
    )


class CustomerService:
    """Customer-level operations (merging duplicate accounts)."""

    @classmethod
    @retrying
    def merge_customers(cls, target_user_id: Any, source_user_id: Any) -> dict[str, int]:
        """Move the source account's data into the target; return what moved.

        Returns ``{"moved_orders", "moved_batches", "moved_transactions", "moved_identities",
        "moved_referrals"}``. Raises ``MergeError`` ("Target and source users must be
        different."), ``UserNotFound`` ("Target user <id> does not exist." / "Source user …"),
        ``IdentityConflict``. Sends ``customers_merged`` after commit.
        """
        target = coerce_pk(target_user_id)
        source = coerce_pk(source_user_id)
        if target is None:
            raise UserNotFound(f"Target user {target_user_id} does not exist.")
        if source is None:
            raise UserNotFound(f"Source user {source_user_id} does not exist.")
        if target == source:
            raise MergeError("Target and source users must be different.")
        with transaction.atomic():
            _lock_both(target, source)
            stats = {"moved_identities": _move_identities(target, source)}
            stats["periods_chained"] = _chain_periods(target, source, timezone.now())
            stats["moved_orders"] = Order.objects.filter(user_id=source).update(user_id=target)
            stats["moved_batches"] = QuotaBatch.objects.filter(user_id=source).update(
                user_id=target)
            stats["moved_transactions"] = Transaction.objects.filter(
                user_id=source)._reassign_owner(target)
            Reservation.objects.filter(user_id=source).update(user_id=target)
            _copy_idempotency_keys(target, source)
            stats["moved_referrals"] = _move_referrals(target, source)
            _reconcile_trials(target, source)
            _move_growth(target, source)
            CustomerMerge.objects.create(target_user_id=target, source_user_id=source,
                                         target_id_value=str(target),
                                         source_id_value=str(source), stats=stats)
            send_on_commit(customers_merged, sender=cls, target_user_id=target,
                           source_user_id=source)
            # Bots in other processes hear of the moved identities from the identity table's
            # triggers (one notice per moved row, naming both accounts, on commit).
        logger.info("Merged customer %s into %s: %s", source, target, stats)
        return {key: stats[key] for key in ("moved_orders", "moved_batches",
                                            "moved_transactions", "moved_identities",
                                            "moved_referrals")}

    @classmethod
    async def amerge_customers(cls, target_user_id: Any, source_user_id: Any) -> dict[str, int]:
        """Async twin of :meth:`merge_customers`."""
        return await sync_to_async(cls.merge_customers)(target_user_id, source_user_id)


__all__ = ["CustomerService"]
