"""The published 0.2 shapes, kept at the edge: failure dicts, boolean twins, order dicts.

The engine (``billable.ledger``) and the strict facade methods raise billable exceptions and
return models or typed results. The 0.2 contract (SPEC §4) is produced here, from them, so the
core has one failure style:

* :func:`failure_result` turns a refusal (``QuotaExhausted``, ``InsufficientFunds``,
  ``IdempotencyConflict``) into ``{"success": False, "error": <code>, "message": <text>}``, the
  dict ``consume_quota`` and ``exchange`` return;
* :class:`OrderCompat` adds the 0.2 order methods — ``process_payment``, ``cancel_order``,
  ``refund_order`` (``bool``) and ``serialize_order_to_dict`` — to ``OrderService`` on top of
  its strict core (``pay_order``, ``cancel_pending_order``, ``refund_paid_order``).
"""

from __future__ import annotations

from typing import Any, TypedDict

from asgiref.sync import sync_to_async

from billable.exceptions import BillableError, OrderNotFound, OrderStateError
from billable.models import Order
from billable.validation import order_pk


class FailureResult(TypedDict):
    """The 0.2 failure dict of ``consume_quota`` / ``exchange``."""

    success: bool
    error: str
    message: str


def failure_result(exc: BillableError) -> FailureResult:
    """The 0.2 failure dict for a refusal raised by the engine."""
    return {"success": False, "error": exc.code, "message": exc.message}


class OrderCompat:
    """The 0.2 order methods, written once on top of the strict ones (a mixin)."""

    @classmethod
    def process_payment(cls: Any, order_id: Any, payment_id: Any = None,
                        payment_method: str | None = None) -> bool:
        """Published-compatible confirmation: ``True`` when the order is (now) paid.

        Same rules and errors as ``pay_order`` (refusals raise, nothing is granted).
        """
        cls.pay_order(order_id, payment_id=payment_id, payment_method=payment_method)
        return True

    @classmethod
    async def aprocess_payment(cls: Any, order_id: Any, payment_id: Any = None,
                               payment_method: str | None = None) -> bool:
        """Async twin of :meth:`process_payment`."""
        return bool(await sync_to_async(cls.process_payment)(order_id, payment_id,
                                                             payment_method))

    @classmethod
    def cancel_order(cls: Any, order_id: Any, reason: str | None = None) -> bool:
        """Published-compatible cancel: ``False`` for a paid or refunded order, else ``True``.

        Raises ``OrderNotFound`` for an unknown order.
        """
        try:
            cls.cancel_pending_order(order_id, reason=reason)
        except OrderStateError:
            return False
        return True

    @classmethod
    async def acancel_order(cls: Any, order_id: Any, reason: str | None = None) -> bool:
        """Async twin of :meth:`cancel_order`."""
        return bool(await sync_to_async(cls.cancel_order)(order_id, reason))

    @classmethod
    def refund_order(cls: Any, order_id: Any, reason: str | None = None) -> bool:
        """Published-compatible refund: ``True`` when refunded, ``False`` if the order is not paid.

        Raises ``OrderNotFound`` for an unknown order.
        """
        try:
            cls.refund_paid_order(order_id, reason=reason)
        except OrderStateError:
            return False
        return True

    @classmethod
    async def arefund_order(cls: Any, order_id: Any, reason: str | None = None) -> bool:
        """Async twin of :meth:`refund_order`."""
        return bool(await sync_to_async(cls.refund_order)(order_id, reason))

    @classmethod
    def serialize_order_to_dict(cls, order: Order) -> dict[str, Any]:
        """The order as a dict (``Decimal`` amounts, ``datetime`` values, as in 0.2)."""
        return serialize_order_to_dict(order)

    @classmethod
    async def aserialize_order_to_dict(cls, order: Order) -> dict[str, Any]:
        """Async twin of :meth:`serialize_order_to_dict`."""
        return await sync_to_async(serialize_order_to_dict)(order)


def serialize_order_to_dict(order: Order) -> dict[str, Any]:
    """``{id, user_id, status, total_amount, currency, payment_method, payment_id, created_at,
    paid_at, items: [{id, sku, quantity, price}], metadata}`` (0.2 types).

    ``order`` is an ``Order`` or its primary key; anything else is ``OrderNotFound``.
    """
    if not isinstance(order, Order):
        found = Order.objects.filter(pk=order_pk(order)).first()
        if found is None:
            raise OrderNotFound(f"Order not found: {order!r}")
        order = found
    cache = getattr(order, "_prefetched_objects_cache", {})
    lines = order.items.all() if "items" in cache else order.items.select_related("offer")
    items = [{"id": item.pk, "sku": item.offer.sku, "quantity": item.quantity,
              "price": item.price} for item in lines]
    return {
        "id": order.pk, "user_id": order.user_id, "status": order.status,
        "total_amount": order.total_amount, "currency": order.currency,
        "payment_method": order.payment_method, "payment_id": order.payment_id,
        "created_at": order.created_at, "paid_at": order.paid_at,
        "items": items, "metadata": order.metadata or {},
    }


__all__ = ["FailureResult", "OrderCompat", "failure_result", "serialize_order_to_dict"]
