"""Order endpoints: create, read, confirm (payment webhook), cancel and refund.

Prices always come from the catalog. State changes go through ``OrderService`` (sync, atomic,
row-locked) via its async twins; every response carries the order document
(``OrderService.serialize_order_to_dict``).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from ninja import Router

from billable.api.errors import error_status, fail
from billable.api.users import resolve_user_id
from billable.exceptions import OfferNotFound, OrderStateError
from billable.growth.gifts import GiftService
from billable.models import Order
from billable.schemas.common import CommonResponse, DbId, responses
from billable.schemas.orders import (
    OrderCancelSchema,
    OrderConfirmSchema,
    OrderCreateSchema,
    OrderRefundSchema,
    OrderSchema,
)
from billable.services import OrderService

router = Router()

GIFT_PAID = "Order paid; the gift is ready to be claimed"
REFUND_FAILED = "Failed to process refund. Order might not be in PAID status."


def _document(order_id: int) -> dict[str, Any]:
    """The order as JSON-ready data (decimals as strings, ISO datetimes)."""
    order = OrderService.get_order(order_id)
    return OrderSchema.model_validate(OrderService.serialize_order_to_dict(order)).model_dump(
        mode="json")


async def _document_async(order: Order | int) -> dict[str, Any]:
    order_id = order.pk if isinstance(order, Order) else order
    return await sync_to_async(_document)(order_id)


@router.post("/orders", response=responses(OrderSchema))
@error_status({OfferNotFound: 400})
async def create_order(request: HttpRequest, data: OrderCreateSchema) -> Any:
    """Create a ``pending`` order for ``items`` (``[{"sku", "quantity"}]``), priced by the catalog.

    ``400`` for unknown/inactive SKUs (``Offer not found for sku: '<sku>'``), items without a
    SKU, bad quantities or mixed currencies. A new external identity is created first. With an
    ``idempotency_key`` a retry of the same body returns the order the first request created;
    ``409`` when the key was used for a different request.
    """
    uid = await resolve_user_id(data)
    order = await OrderService.acreate_order(uid, data.items, data.metadata,
                                             idempotency_key=data.idempotency_key)
    return await _document_async(order)


@router.get("/orders/{order_id}", response=responses(OrderSchema))
async def get_order(request: HttpRequest, order_id: DbId) -> Any:
    """One order with its lines (``404 Order not found``)."""
    return await _document_async(order_id)


@router.post("/orders/{order_id}/confirm", response=responses(CommonResponse))
async def confirm_order(request: HttpRequest, order_id: DbId,
                        data: OrderConfirmSchema | None = None) -> Any:
    """Mark a pending order paid and grant its products, exactly once.

    A replay with the same ``payment_id`` is a no-op success. ``404`` for an unknown order;
    ``409`` for a cancelled/refunded order, another payment id for a paid order, or a payment
    id that already paid another order (nothing is granted then). The body is optional: a
    bare ``POST`` (the 0.2 README's webhook call) confirms without a payment id. The order of
    a gift is paid without granting (the message says so) and its gift becomes claimable.
    """
    data = data or OrderConfirmSchema.model_validate({})
    if await sync_to_async(GiftService.is_gift_order)(order_id):
        # A gift's order: paid, nothing granted; the gift is claimable (docs/growth.md).
        order = await GiftService.apay_gift_order(order_id, payment_id=data.payment_id,
                                                  payment_method=data.payment_method)
        return {"success": True, "message": GIFT_PAID, "data": await _document_async(order)}
    order = await OrderService.apay_order(order_id, payment_id=data.payment_id,
                                          payment_method=data.payment_method)
    return {"success": True, "message": "Order paid and products activated",
            "data": await _document_async(order)}


@router.post("/orders/{order_id}/cancel", response=responses(CommonResponse))
async def cancel_order(request: HttpRequest, order_id: DbId,
                       data: OrderCancelSchema | None = None) -> Any:
    """``pending → cancelled`` (repeating it is a no-op); ``409`` for paid/refunded orders.

    The body (``{"reason"}``) is optional.
    """
    data = data or OrderCancelSchema.model_validate({})
    order = await OrderService.acancel_pending_order(order_id, reason=data.reason)
    return {"success": True, "message": "Order cancelled", "data": await _document_async(order)}


@router.post("/orders/{order_id}/refund", response=responses(CommonResponse))
@error_status({OrderStateError: 400})
async def refund_order(request: HttpRequest, order_id: DbId,
                       data: OrderRefundSchema | None = None) -> Any:
    """``paid → refunded``: revoke what is left of the granted products.

    ``400 Failed to process refund. Order might not be in PAID status.`` for any other status;
    ``404`` for an unknown order. The body (``{"reason"}``) is optional.
    """
    data = data or OrderRefundSchema.model_validate({})
    try:
        order = await OrderService.arefund_paid_order(order_id, reason=data.reason)
    except OrderStateError:
        return fail(400, REFUND_FAILED, OrderStateError.code)
    return {"success": True, "message": "Order refunded and products revoked",
            "data": await _document_async(order)}
