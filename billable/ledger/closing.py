"""Closing batches: expiry (time ran out) and revocation (the order was refunded).

Both write a DEBIT for whatever is left in the batch before changing its state, so the ledger
invariant (``initial − Σ DEBIT − held == remaining``) holds afterwards. Batches are locked in
primary-key order, like everywhere else (``billable.ledger.locks``); expiry works in chunks so
a large backlog never holds thousands of locks at once. A revocation re-chains the owner's
queued periods so a refund never leaves a hole in the access the user keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billable.exceptions import OrderNotFound, RetryTransaction
from billable.ledger import periods, wallet
from billable.ledger.audit import emit_created
from billable.ledger.locks import lock_users
from billable.ledger.retry import drain, retrying
from billable.models import Order, Product, QuotaBatch, Transaction
from billable.validation import order_pk

CHUNK = 500
OPEN = (QuotaBatch.State.ACTIVE, QuotaBatch.State.EXHAUSTED)


def expire_due(*, user_id: Any = None, chunk: int = CHUNK,
               progress: Callable[[int], None] | None = None) -> int:
    """Move ``ACTIVE`` batches past their expiry to ``EXPIRED``; return how many moved.

    ``progress(n)`` is called after each committed chunk of ``n`` batches.
    """
    return drain(lambda size: _expire_chunk(user_id, size), chunk=chunk, progress=progress)


@retrying
def _expire_chunk(user_id: Any, chunk: int) -> int:
    now = timezone.now()
    with transaction.atomic():
        due = QuotaBatch.objects.filter(state=QuotaBatch.State.ACTIVE, expires_at__lte=now)
        if user_id is not None:
            due = due.filter(user_id=user_id)
        batches = list(due.order_by("id").select_for_update(no_key=True)[:chunk])
        _close(batches, state=QuotaBatch.State.EXPIRED, action_type="expiration",
               metadata={"reason": "expired"})
    return len(batches)


@retrying
def revoke_order(*, order: Order | Any, reason: str) -> int:
    """Revoke every open batch granted by ``order`` (DEBIT of the remainder, ``REVOKED``).

    Queued periods of the same products are moved forward over the time the revoked periods
    would still have run (:func:`periods.close_gaps`): the user keeps every other purchase, in
    one run without a hole. Locks: the owners' accounts (serialising with period grants), then
    in one ascending statement the order's batches and the owners' running and queued period
    batches of those products.
    """
    pk = order_pk(order)
    now = timezone.now()
    with transaction.atomic():
        rows = list(QuotaBatch.objects.filter(order_item__order_id=pk, state__in=OPEN)
                    .values_list("pk", "user_id", "product_id", "product__product_type",
                                 "expires_at"))
        if not rows:
            if not Order.objects.filter(pk=pk).exists():
                raise OrderNotFound(f"Order not found: {order!r}")
            return 0
        owners = {user for _, user, _, _, _ in rows}
        lock_users(owners)
        periods_left = {product for _, _, product, kind, end in rows
                        if kind == Product.ProductType.PERIOD and end is not None and end > now}
        mine = {pk for pk, _, _, _, _ in rows}
        scope = Q(pk__in=mine) | Q(user_id__in=owners, product_id__in=periods_left,
                                   state=QuotaBatch.State.ACTIVE, expires_at__gt=now)
        locked = list(QuotaBatch.objects.filter(scope).order_by("id")
                      .select_for_update(no_key=True))
        if {b.user_id for b in locked if b.pk in mine} != owners:
            # A customer merge moved the batches (a claimed gift's claimer was merged) between
            # the read and the account lock: the owners locked and re-chained would be the
            # emptied account's. Start again; the merge has committed, the next read sees it.
            raise RetryTransaction("the order's batches changed owner while locking")
        revoked = [b for b in locked if b.pk in mine and b.state in OPEN]
        moved = _rechain([b for b in locked if b.pk not in mine], periods_left, now)
        meta: dict[str, Any] = {"reason": reason, "order_id": pk}
        if moved:
            meta["periods_moved_forward"] = [str(b.pk) for b in moved]
        _close(revoked, state=QuotaBatch.State.REVOKED, action_type=reason, metadata=meta,
               related=Order(pk=pk))
    return len(revoked)


def _rechain(others: list[QuotaBatch], products: set[Any], now: Any) -> list[QuotaBatch]:
    """Close the gaps the revoked periods leave in each owner's access to each product."""
    moved: list[QuotaBatch] = []
    groups: dict[tuple[Any, Any], list[QuotaBatch]] = {}
    for batch in others:
        if batch.product_id in products and batch.state == QuotaBatch.State.ACTIVE:
            groups.setdefault((batch.user_id, batch.product_id), []).append(batch)
    for group in groups.values():
        moved += periods.close_gaps(group, now)
    if moved:
        QuotaBatch.objects.bulk_update(moved, ["valid_from", "expires_at"])
    return moved


def _close(batches: list[QuotaBatch], *, state: str, action_type: str,
           metadata: dict[str, Any], related: Any = None) -> None:
    if not batches:
        return
    content_type = ContentType.objects.get_for_model(related) if related is not None else None
    rows = [
        Transaction(user_id=b.user_id, quota_batch_id=b.pk, amount=b.remaining_quantity,
                    direction=wallet.DEBIT, action_type=action_type, metadata=metadata,
                    content_type=content_type,
                    object_id=str(related.pk) if related is not None else None)
        for b in batches if b.remaining_quantity > 0
    ]
    Transaction.objects.bulk_create(rows)
    QuotaBatch.objects.filter(pk__in=[b.pk for b in batches]).update(
        state=state, remaining_quantity=0
    )
    for batch in batches:
        batch.state, batch.remaining_quantity = state, 0
    emit_created(rows)


__all__ = ["expire_due", "revoke_order"]
