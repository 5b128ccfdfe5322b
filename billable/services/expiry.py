"""Closing batches: expiry (time ran out) and revocation (the order was refunded).

Both write a DEBIT for whatever is left in the batch before changing its state, so the ledger
invariant (``initial − Σ DEBIT − held == remaining``) holds afterwards. Batches are locked in
primary-key order, like everywhere else, and processed in chunks so a large backlog never holds
thousands of locks at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from billable.exceptions import OrderNotFound
from billable.models import Order, QuotaBatch, Transaction
from billable.services import wallet

CHUNK = 500


def expire_due(*, user_id: Any = None, chunk: int = CHUNK,
               progress: Callable[[int], None] | None = None) -> int:
    """Move ``ACTIVE`` batches past their expiry to ``EXPIRED``; return how many moved.

    ``progress(n)`` is called after each committed chunk of ``n`` batches.
    """
    expired = 0
    while True:
        now = timezone.now()
        with transaction.atomic():
            due = QuotaBatch.objects.filter(state=QuotaBatch.State.ACTIVE, expires_at__lte=now)
            if user_id is not None:
                due = due.filter(user_id=user_id)
            batches = list(due.order_by("id").select_for_update()[:chunk])
            _close(batches, state=QuotaBatch.State.EXPIRED, action_type="expiration",
                   metadata={"reason": "expired"})
        expired += len(batches)
        if progress is not None:
            progress(len(batches))
        if len(batches) < chunk:
            return expired


def revoke_order(order: Order | Any, *, reason: str) -> int:
    """Revoke every open batch granted by ``order`` (DEBIT of the remainder, ``REVOKED``)."""
    order_pk = _order_pk(order)
    with transaction.atomic():
        batches = list(
            QuotaBatch.objects.filter(
                order_item__order_id=order_pk,
                state__in=[QuotaBatch.State.ACTIVE, QuotaBatch.State.EXHAUSTED],
            ).order_by("id").select_for_update(of=("self",))
        )
        _close(batches, state=QuotaBatch.State.REVOKED, action_type=reason,
               metadata={"reason": reason, "order_id": order_pk},
               related=Order(pk=order_pk))
    return len(batches)


def _order_pk(order: Any) -> Any:
    if isinstance(order, Order):
        return order.pk
    pk_field = Order._meta.pk
    assert pk_field is not None
    try:
        if isinstance(order, (bool, float)) or order is None:
            raise ValidationError("missing")
        return pk_field.to_python(order)
    except ValidationError as exc:
        raise OrderNotFound(f"Order not found: {order!r}") from exc


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
    wallet.emit_created(rows)


__all__ = ["expire_due", "revoke_order"]
