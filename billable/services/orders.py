"""Orders and payments: a strict ``pending → paid → refunded`` state machine.

* ``create_order`` prices every line from the catalog (a client ``price`` is ignored), accepts
  only active offers with items, quantities the ledger can honour and one currency per order
  (``order_input``), and freezes each line's contents in ``OrderItem.snapshot``.
* ``pay_order`` / ``process_payment`` move ``pending → paid`` exactly once and grant every line
  in the same database transaction (the order row is locked; the partial unique constraint on
  ``(payment_method, payment_id)`` makes one payment id pay at most one order).
* ``cancel_order`` (pending only) and ``refund_order`` (paid only; revokes what is left and
  moves the user's later periods forward over the refunded time).

The core is strict: ``pay_order``, ``cancel_pending_order`` and ``refund_paid_order`` return the
``Order`` and raise. The published 0.2 names (``process_payment``, ``cancel_order``,
``refund_order`` returning booleans, ``serialize_order_to_dict``) come from
``billable.compat.OrderCompat``, written once on top of them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from billable.compat import OrderCompat
from billable.exceptions import InvalidAmount, OrderNotFound, OrderStateError, UserNotFound
from billable.ledger import closing, payments
from billable.ledger import grants as granting  # noqa: F401  (kept: tests patch its grant_lines)
from billable.ledger.idempotency import claim_key
from billable.ledger.retry import retrying
from billable.ledger.snapshots import snapshot_of
from billable.models import IdempotencyKey, Order, OrderItem
from billable.services.order_input import (
    DEFAULT_PAYMENT_METHOD,
    MAX_TOTAL,
    load_offers,
    order_currency,
    parse_lines,
    payment_fields,
    reason_text,
)
from billable.signals import order_cancelled, order_confirmed, order_refunded, send_on_commit
from billable.validation import coerce_pk, metadata_dict, optional_key


class OrderService(OrderCompat):
    """Create, pay, cancel, refund and serialise orders (sync + async twins)."""

    @classmethod
    def create_order(cls, user_id: Any, items: Any,
                     metadata: dict[str, Any] | None = None, *,
                     idempotency_key: str | None = None) -> Order:
        """Create a ``pending`` order priced from the catalog.

        ``items``: ``[{"sku": ..., "quantity": n}]`` (SKUs in any case; a client ``price`` is
        ignored). Raises ``InvalidInput`` ("Item must have 'sku'", mixed currencies, empty order),
        ``InvalidAmount`` (quantity), ``OfferNotFound`` ("Offer not found for sku: '<sku>'"),
        ``UserNotFound``. With an ``idempotency_key`` a retry of the same request returns the
        order the first one created (whatever its status now); the key reused for another
        request raises ``IdempotencyConflict``.
        """
        lines = parse_lines(items)
        metadata = metadata_dict(metadata)
        key = optional_key(idempotency_key)
        offers = load_offers(lines)
        currency = order_currency([offers[sku] for _, sku, _ in lines])
        pk = coerce_pk(getattr(user_id, "pk", user_id))
        if pk is None or not get_user_model().objects.filter(pk=pk).exists():
            raise UserNotFound(f"User {user_id} not found")
        total = sum((offers[sku].price * qty for _, sku, qty in lines), Decimal("0.00"))
        if total >= MAX_TOTAL:
            raise InvalidAmount("Order total is too large", field="quantity")
        with transaction.atomic():
            if key is not None:
                request = {"lines": [[sku, qty] for _, sku, qty in lines], "metadata": metadata}
                earlier = claim_key(user_id=pk, key=key, operation="create_order",
                                    request=request, result={})
                if earlier is not None:
                    return cls.get_order(earlier.result.get("order_id"))
            order = Order.objects.create(user_id=pk, total_amount=total, currency=currency,
                                         status=Order.Status.PENDING, metadata=metadata)
            OrderItem.objects.bulk_create([
                OrderItem(order=order, offer=offers[sku], quantity=qty, price=offers[sku].price,
                          snapshot=snapshot_of(offers[sku]))
                for _, sku, qty in lines
            ])
            if key is not None:
                IdempotencyKey.objects.filter(user_id=pk, key=key).update(
                    result={"order_id": str(order.pk)})
        return order

    @classmethod
    async def acreate_order(cls, user_id: Any, items: Any,
                            metadata: dict[str, Any] | None = None, *,
                            idempotency_key: str | None = None) -> Order:
        """Async twin of :meth:`create_order`."""
        return await sync_to_async(cls.create_order)(user_id, items, metadata,
                                                     idempotency_key=idempotency_key)

    @classmethod
    def get_order(cls, order_id: Any) -> Order:
        """The order with its lines and offers prefetched; raises ``OrderNotFound``."""
        pk = coerce_pk(order_id)
        order = (Order.objects.prefetch_related("items__offer").filter(pk=pk).first()
                 if pk else None)
        if order is None:
            raise OrderNotFound("Order not found")
        return order

    @classmethod
    async def aget_order(cls, order_id: Any) -> Order:
        """Async twin of :meth:`get_order`."""
        return await sync_to_async(cls.get_order)(order_id)

    @classmethod
    @retrying
    def pay_order(cls, order_id: Any, *, payment_id: Any = None,
                  payment_method: str | None = None) -> Order:
        """Mark a pending order paid and grant every line, exactly once; return the order.

        A replay with the same payment id returns the paid order unchanged. Raises
        ``OrderNotFound``; ``OrderStateError`` for cancelled/refunded orders; ``PaymentConflict``
        when a paid order is confirmed with another payment id or the payment id (per method)
        already paid another order. Nothing is granted on any error.
        """
        payment_id, method = payment_fields(payment_id, payment_method)
        with transaction.atomic():
            paid = payments.mark_paid(order_id=order_id, payment_id=payment_id, method=method,
                                      requested_method=payment_method)
            if paid.fresh:
                send_on_commit(order_confirmed, sender=cls, order=paid.order)
        return paid.order

    @classmethod
    async def apay_order(cls, order_id: Any, *, payment_id: Any = None,
                         payment_method: str | None = None) -> Order:
        """Async twin of :meth:`pay_order`."""
        return await sync_to_async(cls.pay_order)(order_id, payment_id=payment_id,
                                                  payment_method=payment_method)

    @classmethod
    @retrying
    def cancel_pending_order(cls, order_id: Any, *, reason: str | None = None) -> Order:
        """``pending → cancelled`` (a cancelled order stays cancelled); raises otherwise."""
        reason = reason_text(reason)
        with transaction.atomic():
            order = payments.locked_order(order_id=order_id)
            if order.status == Order.Status.CANCELLED:
                return order
            if order.status != Order.Status.PENDING:
                raise OrderStateError(f"Order #{order.pk} is {order.status} and cannot be "
                                      "cancelled")
            order.status = Order.Status.CANCELLED
            order.metadata = _with_reason(order.metadata, "cancel_reason", reason,
                                          "cancelled_at")
            order.save(update_fields=["status", "metadata"])
            send_on_commit(order_cancelled, sender=cls, order=order)
        return order

    @classmethod
    async def acancel_pending_order(cls, order_id: Any, *, reason: str | None = None) -> Order:
        """Async twin of :meth:`cancel_pending_order`."""
        return await sync_to_async(cls.cancel_pending_order)(order_id, reason=reason)

    @classmethod
    @retrying
    def refund_paid_order(cls, order_id: Any, *, reason: str | None = None) -> Order:
        """``paid → refunded``: revoke what is left of every granted batch (DEBIT rows)."""
        reason = reason_text(reason)
        with transaction.atomic():
            order = payments.locked_order(order_id=order_id)
            if order.status != Order.Status.PAID:
                raise OrderStateError(f"Order #{order.pk} is {order.status}; only paid orders "
                                      "can be refunded")
            closing.revoke_order(order=order, reason="refund")
            order.status = Order.Status.REFUNDED
            order.metadata = _with_reason(order.metadata, "refund_reason", reason,
                                          "refunded_at")
            order.save(update_fields=["status", "metadata"])
            send_on_commit(order_refunded, sender=cls, order=order)
        return order

    @classmethod
    async def arefund_paid_order(cls, order_id: Any, *, reason: str | None = None) -> Order:
        """Async twin of :meth:`refund_paid_order`."""
        return await sync_to_async(cls.refund_paid_order)(order_id, reason=reason)



def _with_reason(metadata: Any, key: str, reason: str | None, stamp: str) -> dict[str, Any]:
    data = dict(metadata) if isinstance(metadata, dict) else {}
    if reason:
        data[key] = str(reason)
    data[stamp] = timezone.now().isoformat()
    return data


__all__ = ["DEFAULT_PAYMENT_METHOD", "OrderService"]
