"""Promo code and gift endpoints.

``GET /promo/quote`` (quote, checks every limit, writes nothing), ``POST /promo/redeem``,
``GET /gifts/{token}`` and ``POST /gifts/{token}/claim``. Refusals use the error envelope with
stable codes: ``promo_unknown`` (404), ``promo_expired``, ``promo_exhausted``,
``promo_already_used``, ``promo_not_first_time`` (409), ``promo_not_applicable`` (400; also a
grant code asked for a ``sku`` that is not its offer), ``offer_not_found`` (404: no active
offer has the ``sku``), ``gift_unknown`` (404), ``gift_own``, ``gift_already_claimed``,
``gift_expired`` (409).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from ninja import Router

from billable.api.errors import error_status
from billable.api.users import existing_user_id, resolve_user_id
from billable.exceptions import UserNotFound
from billable.growth.gifts import GiftService
from billable.growth.promo import PromoService, Quote, Redemption
from billable.models import Gift, QuotaBatch
from billable.schemas.common import CommonResponse, DbId, ExternalId, Key, Label, responses
from billable.schemas.growth import Code, GiftClaimSchema, PromoRedeemSchema
from billable.schemas.orders import OrderSchema
from billable.services import OrderService

router = Router()


def _products(batches: list[QuotaBatch]) -> list[dict[str, Any]]:
    return [{"product_key": b.product.product_key, "quantity": b.initial_quantity,
             "expires_at": b.expires_at.isoformat() if b.expires_at else None} for b in batches]


def _quote_data(quote: Quote) -> dict[str, Any]:
    return {"code": quote.promo.code, "kind": quote.promo.kind, "sku": quote.offer.sku,
            "list_price": str(quote.list_price), "price": str(quote.price),
            "discount": str(quote.discount), "currency": quote.currency}


def _redeemed(result: Redemption) -> dict[str, Any]:
    red = result.redemption
    order = None
    if result.order is not None:
        order = OrderSchema.model_validate(OrderService.serialize_order_to_dict(
            OrderService.get_order(result.order.pk))).model_dump(mode="json")
    return {"code": red.promo.code, "kind": red.promo.kind, "redemption_id": red.pk,
            "status": red.status, "sku": red.offer.sku, "list_price": str(red.list_price),
            "price": str(red.price), "discount": str(red.list_price - red.price),
            "currency": red.currency, "products": _products(result.batches), "order": order}


@router.get("/promo/quote", response=responses(CommonResponse))
@error_status({UserNotFound: 404})
async def check_promo(request: HttpRequest, code: Code, user_id: DbId | None = None,
                      external_id: ExternalId | None = None, provider: Label | None = None,
                      sku: Key | None = None) -> Any:
    """What ``code`` gives (the discounted price of ``sku`` for discount codes), checking every
    limit — for the named customer when one is given. Writes nothing."""
    uid = None
    if user_id is not None or external_id is not None:
        uid = await existing_user_id(user_id=user_id, external_id=external_id,
                                     provider=provider)
    quote = await PromoService.aquote(code, user_id=uid, sku=sku)
    return {"success": True, "message": "Promo code is valid", "data": _quote_data(quote)}


@router.post("/promo/redeem", response=responses(CommonResponse))
async def redeem_promo(request: HttpRequest, data: PromoRedeemSchema) -> Any:
    """Redeem ``code``: a grant code grants its offer now; a discount code returns a pending
    order at the discounted price (pay it with ``POST /orders/{id}/confirm``; the use is given
    back if it is not paid in time). A new external identity is created first."""
    uid = await resolve_user_id(data)
    identities = dict(data.identities) if data.identities else None
    if identities is None and data.external_id is not None:
        identities = {data.provider or "default": data.external_id}
    result = await PromoService.aredeem(data.code, user_id=uid, sku=data.sku,
                                        identities=identities, metadata=data.metadata)
    body = await sync_to_async(_redeemed)(result)
    return {"success": True, "message": "Promo code redeemed", "data": body}


@router.get("/gifts/{token}", response=responses(CommonResponse))
async def gift_status(request: HttpRequest, token: Label) -> Any:
    """A gift's offer and state (the buyer is not disclosed)."""
    gift = await GiftService.aget_gift(token)
    status = GiftService.status_of(gift)
    return {"success": True, "message": "Gift found", "data": {
        "sku": gift.offer.sku, "name": gift.offer.name, "status": status,
        "claimable": status == Gift.Status.READY,
        "expires_at": gift.expires_at.isoformat() if gift.expires_at else None}}


@router.post("/gifts/{token}/claim", response=responses(CommonResponse))
async def claim_gift(request: HttpRequest, token: Label, data: GiftClaimSchema) -> Any:
    """Claim the gift for the named customer: first claim wins; the buyer cannot claim it."""
    uid = await resolve_user_id(data)
    batches = await sync_to_async(_claim)(token, uid, data.metadata)
    return {"success": True, "message": "Gift claimed", "data": {"products": batches}}


def _claim(token: str, user_id: int, metadata: dict[str, Any] | None) -> list[dict[str, Any]]:
    batches = GiftService.claim(token, user_id=user_id, metadata=metadata)
    for batch in batches:
        batch.product  # noqa: B018 (loaded here, not in the event loop)
    return _products(batches)


__all__ = ["router"]
