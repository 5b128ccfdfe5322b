"""REST: promo codes and gifts, every refusal with its stable code and status."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from billable.models import Gift, Offer, PromoCode
from tests.billable.api.conftest import in_main_thread

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(make_product: Any, make_offer: Any) -> dict[str, Any]:
    credits = make_product("CREDITS", name="Credits")
    return {"pack": make_offer("PACK_10", items=[(credits, 10)], price="50", currency="XTR"),
            "free": make_offer("FREE_5", items=[(credits, 5)], price="0")}


def _code(code: str, **fields: Any) -> PromoCode:
    return PromoCode.objects.create(code=code, **fields)


def _error(reply: Any) -> tuple[int, str]:
    return reply.status_code, reply.json()["data"]["error"]


@in_main_thread
async def test_redeem_grant_code_then_refusals(api: Any, user: Any, make_user: Any,
                                               shop: dict) -> None:
    await sync_to_async(_code)("WELCOME", offer=shop["free"], max_uses=2)
    reply = await api.post("/promo/redeem", {"user_id": user.pk, "code": "welcome"})
    assert reply.status_code == 200, reply.json()
    data = reply.json()["data"]
    assert (data["code"], data["kind"], data["status"], data["order"]) == (
        "WELCOME", "grant", "redeemed", None)
    assert data["products"][0]["product_key"] == "CREDITS"
    assert (await api.get("/wallet", user_id=user.pk)).json()["balances"] == {"CREDITS": 5}
    assert _error(await api.post("/promo/redeem", {"user_id": user.pk, "code": "WELCOME"})) == (
        409, "promo_already_used")
    other = await sync_to_async(make_user)()
    await api.post("/promo/redeem", {"user_id": other.pk, "code": "WELCOME"})
    third = await sync_to_async(make_user)()
    assert _error(await api.post("/promo/redeem", {"user_id": third.pk, "code": "welcome"})) == (
        409, "promo_exhausted")
    assert _error(await api.post("/promo/redeem", {"user_id": third.pk, "code": "nope"})) == (
        404, "promo_unknown")


@in_main_thread
async def test_redeem_by_telegram_identity_is_once_per_identity(api: Any, shop: dict) -> None:
    await sync_to_async(_code)("TG", offer=shop["free"])
    body = {"provider": "telegram", "external_id": "5454776146", "code": "tg"}
    assert (await api.post("/promo/redeem", body)).status_code == 200
    assert _error(await api.post("/promo/redeem", body)) == (409, "promo_already_used")


@in_main_thread
async def test_expired_and_first_time_only_codes(api: Any, user: Any, shop: dict) -> None:
    await sync_to_async(_code)("OLD", offer=shop["free"],
                               valid_until=timezone.now() - timedelta(days=1))
    assert _error(await api.post("/promo/redeem", {"user_id": user.pk, "code": "old"})) == (
        409, "promo_expired")
    await sync_to_async(_code)("FIRST", offer=shop["free"], first_time_only=True)
    order = (await api.post("/orders", {"user_id": user.pk,
                                        "items": [{"sku": "PACK_10", "quantity": 1}]})).json()
    await api.post(f"/orders/{order['id']}/confirm", {"payment_id": "p-1"})
    assert _error(await api.post("/promo/redeem", {"user_id": user.pk, "code": "first"})) == (
        409, "promo_not_first_time")


@in_main_thread
async def test_discount_code_quote_redeem_and_pay(api: Any, user: Any, shop: dict) -> None:
    await sync_to_async(_code)("SALE", kind="percent", percent_off=30)
    quote = await api.get("/promo/quote", code="sale", sku="pack_10", user_id=user.pk)
    assert quote.status_code == 200
    assert {k: quote.json()["data"][k] for k in ("list_price", "price", "discount")} == {
        "list_price": "50.00", "price": "35", "discount": "15.00"}
    assert _error(await api.post("/promo/redeem", {"user_id": user.pk, "code": "sale"})) == (
        400, "promo_not_applicable")
    reply = await api.post("/promo/redeem", {"user_id": user.pk, "code": "sale",
                                             "sku": "PACK_10"})
    order = reply.json()["data"]["order"]
    assert (order["status"], order["total_amount"]) == ("pending", "35.00")
    paid = await api.post(f"/orders/{order['id']}/confirm", {"payment_id": "p-2"})
    assert paid.status_code == 200
    assert (await api.get("/wallet", user_id=user.pk)).json()["balances"] == {"CREDITS": 10}


@in_main_thread
async def test_unknown_user_and_bad_input(api: Any, shop: dict) -> None:
    await sync_to_async(_code)("X1", offer=shop["free"])
    assert (await api.post("/promo/redeem", {"user_id": 999999, "code": "x1"})).status_code == 404
    assert (await api.post("/promo/redeem", {"code": "x1"})).status_code == 400
    assert (await api.post("/promo/redeem", {"user_id": 1, "code": "x" * 65})).status_code == 422
    assert (await api.get("/promo/quote", code="x1", user_id=999999)).status_code == 404


def _paid_gift(buyer_id: int) -> Gift:
    from billable.growth.gifts import GiftService

    gift = GiftService.create_gift(buyer_id, "PACK_10")
    GiftService.pay_gift_order(gift.order_id, payment_id=f"gift-{gift.pk}")
    return Gift.objects.get(pk=gift.pk)


@in_main_thread
async def test_gift_claim_first_wins_own_refused(api: Any, make_user: Any, shop: dict) -> None:
    buyer, alice, bob = [await sync_to_async(make_user)() for _ in range(3)]
    gift = await sync_to_async(_paid_gift)(buyer.pk)
    info = (await api.get(f"/gifts/{gift.token}")).json()["data"]
    assert (info["sku"], info["status"], info["claimable"]) == ("PACK_10", "ready", True)
    assert _error(await api.post(f"/gifts/{gift.token}/claim", {"user_id": buyer.pk})) == (
        409, "gift_own")
    claimed = await api.post(f"/gifts/{gift.token}/claim", {"user_id": alice.pk})
    assert claimed.status_code == 200
    assert claimed.json()["data"]["products"][0]["quantity"] == 10
    assert _error(await api.post(f"/gifts/{gift.token}/claim", {"user_id": bob.pk})) == (
        409, "gift_already_claimed")
    assert _error(await api.post("/gifts/nope/claim", {"user_id": bob.pk})) == (
        404, "gift_unknown")
    await Gift.objects.filter(pk=gift.pk).aupdate(status="expired")
    assert _error(await api.post(f"/gifts/{gift.token}/claim", {"user_id": bob.pk})) == (
        409, "gift_expired")
    assert await Offer.objects.acount() == 2
