"""GET /wallet/transactions (filters + cursor paging) and POST /exchange."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from billable.api.cursor import decode_cursor, encode_cursor
from tests.billable.api.conftest import in_main_thread

pytestmark = pytest.mark.django_db


async def _consume(api: Any, user: Any, count: int, **extra: Any) -> None:
    for index in range(count):
        reply = await api.post("/wallet/consume", {"user_id": user.pk, "product_key": "TOKENS",
                                                   "action_type": "test",
                                                   "idempotency_key": f"k{index}", **extra})
        assert reply.status_code == 200


@in_main_thread
async def test_transactions_newest_first_with_filters(api: Any, user: Any, bundle: Any,
                                                      grant: Any) -> None:
    await sync_to_async(grant)(user, bundle)
    await _consume(api, user, 1)
    reply = await api.get("/wallet/transactions", user_id=user.pk)
    assert reply.status_code == 200
    rows = reply.json()
    assert rows[0]["direction"] == "DEBIT"
    assert {r["direction"] for r in rows} == {"CREDIT", "DEBIT"}
    assert all(r["user_id"] == user.pk for r in rows)
    assert "X-Next-Cursor" not in reply.headers
    usage = await api.get("/wallet/transactions", user_id=user.pk, action_type="test")
    assert [r["action_type"] for r in usage.json()] == ["test"]
    premium = await api.get("/wallet/transactions", user_id=user.pk, product_key="premium")
    assert [(r["direction"], r["amount"]) for r in premium.json()] == [("CREDIT", 1)]
    future = await api.get("/wallet/transactions", user_id=user.pk,
                           date_from="2999-01-01T00:00:00")
    assert future.json() == []


@in_main_thread
async def test_transactions_cursor_pages_through_everything(api: Any, user: Any, bundle: Any,
                                                            grant: Any, settings: Any) -> None:
    settings.BILLABLE_TRANSACTIONS_PAGE_SIZE = 3
    await sync_to_async(grant)(user, bundle)
    await _consume(api, user, 6)
    everything = []
    cursor = None
    pages = 0
    while True:
        params = {"user_id": user.pk, **({"cursor": cursor} if cursor else {})}
        reply = await api.get("/wallet/transactions", **params)
        assert reply.status_code == 200
        assert len(reply.json()) <= 3
        everything += reply.json()
        pages += 1
        cursor = reply.headers.get("X-Next-Cursor")
        if not cursor:
            break
    assert pages == 3
    assert len(everything) == 8 == len({row["id"] for row in everything})
    stamps = [(row["created_at"], row["id"]) for row in everything]
    assert stamps == sorted(stamps, reverse=True)
    small = await api.get("/wallet/transactions", user_id=user.pk, limit=2)
    assert len(small.json()) == 2 and small.headers.get("X-Next-Cursor")


@in_main_thread
async def test_transactions_bad_cursor_is_400(api: Any, user: Any) -> None:
    for cursor in ("garbage", "e30", "W10", "x" * 250,
                   "eyJ0IjoiMjAyNi0wMS0wMVQwMDowMDowMCIsImlkIjoiMSJ9"):
        reply = await api.get("/wallet/transactions", user_id=user.pk, cursor=cursor)
        assert reply.status_code == 400, cursor
        assert reply.json()["message"] == "Invalid cursor"
        assert reply.json()["data"]["error"] == "invalid_input"


def test_cursor_round_trip() -> None:
    import uuid

    from django.utils import timezone

    moment, row_id = timezone.now(), uuid.uuid4()
    assert decode_cursor(encode_cursor(moment, row_id)) == (moment, row_id)


@pytest.fixture
def priced_in_credits(bundle: Any, credits: Any) -> Any:
    from billable.models import Offer

    Offer.objects.filter(pk=bundle.pk).update(currency="INTERNAL", price=Decimal("300"))
    return bundle


async def _credits(user: Any, credits: Any, quantity: int) -> None:
    from billable.models import QuotaBatch

    await QuotaBatch.objects.acreate(user=user, product=credits, initial_quantity=quantity,
                                     remaining_quantity=quantity)


@in_main_thread
async def test_exchange_spends_currency_and_grants_offer(api: Any, user: Any, credits: Any,
                                                         priced_in_credits: Any) -> None:
    await _credits(user, credits, 500)
    reply = await api.post("/exchange", {"user_id": user.pk, "sku": "pack_starter",
                                         "metadata": {"reason": "promo"}})
    assert reply.status_code == 200
    body = reply.json()
    assert body["success"] is True and body["message"] == "Exchange successful"
    assert body["data"]["success"] is True and body["data"]["message"] == "Exchanged"
    assert body["data"]["metadata"]["price"] == 300
    assert body["data"]["metadata"]["reason"] == "promo"
    wallet = (await api.get("/wallet", user_id=user.pk)).json()["balances"]
    assert wallet == {"INTERNAL": 200, "TOKENS": 100, "PREMIUM": 1}


@in_main_thread
async def test_exchange_by_identity_and_idempotency(api: Any, user: Any, credits: Any,
                                                    priced_in_credits: Any) -> None:
    from billable.models import ExternalIdentity

    await ExternalIdentity.objects.acreate(user=user, provider="telegram", external_id="123")
    await _credits(user, credits, 1000)
    payload = {"provider": "telegram", "external_id": "123", "sku": "PACK_STARTER",
               "idempotency_key": "ex-1"}
    assert (await api.post("/exchange", payload)).status_code == 200
    assert (await api.post("/exchange", payload)).status_code == 200
    wallet = (await api.get("/wallet", user_id=user.pk)).json()["balances"]
    assert wallet["INTERNAL"] == 700 and wallet["TOKENS"] == 100


@in_main_thread
async def test_exchange_errors(api: Any, user: Any, credits: Any, priced_in_credits: Any,
                               make_offer: Any, make_product: Any) -> None:
    unknown = await api.post("/exchange", {"user_id": user.pk, "sku": "NON_EXISTENT"})
    assert unknown.status_code == 404 and unknown.json()["message"] == "Offer not found"
    no_user = await api.post("/exchange", {"sku": "PACK_STARTER"})
    assert no_user.status_code == 400 and no_user.json()["message"] == "user_id is required"
    await _credits(user, credits, 50)
    short = await api.post("/exchange", {"user_id": user.pk, "sku": "PACK_STARTER"})
    assert short.status_code == 400 and "Insufficient balance" in short.json()["message"]
    target = await sync_to_async(make_product)("TARGET")
    await sync_to_async(make_offer)("GHOST_OFFER", price="10", currency="GHOST",
                                    items=[(target, 1)])
    ghost = await api.post("/exchange", {"user_id": user.pk, "sku": "ghost_offer"})
    assert ghost.status_code == 400
    assert "Currency product 'GHOST' not found" in ghost.json()["message"]
    await sync_to_async(make_product)("NOT_CURRENCY")
    await sync_to_async(make_offer)("NC_OFFER", price="10", currency="NOT_CURRENCY",
                                    items=[(target, 1)])
    not_currency = await api.post("/exchange", {"user_id": user.pk, "sku": "NC_OFFER"})
    assert not_currency.status_code == 400
    assert "not marked as a currency" in not_currency.json()["message"]
    assert (await api.get("/wallet", user_id=user.pk)).json()["balances"] == {"INTERNAL": 50}


@in_main_thread
async def test_exchange_creates_user_for_new_identity(api: Any, bundle: Any) -> None:
    await api.post("/exchange", {"provider": "p", "external_id": "new_ex", "sku": "PACK_STARTER"})
    assert await get_user_model().objects.filter(username="billable_p_new_ex").aexists()


@in_main_thread
async def test_exchange_key_reused_for_a_refused_request_is_409(api: Any, user: Any,
                                                                credits: Any,
                                                                priced_in_credits: Any,
                                                                make_offer: Any,
                                                                make_product: Any) -> None:
    """Before: 400 ``currency_invalid`` (and 404 for an unknown SKU) hid the reused key."""
    await _credits(user, credits, 1000)
    body = {"user_id": user.pk, "idempotency_key": "ex-1"}
    assert (await api.post("/exchange", {**body, "sku": "PACK_STARTER"})).status_code == 200
    target = await sync_to_async(make_product)("TARGET")
    await sync_to_async(make_offer)("GHOST_OFFER", price="10", currency="GHOST",
                                    items=[(target, 1)])
    for sku in ("ghost_offer", "NO_SUCH_OFFER"):
        reused = await api.post("/exchange", {**body, "sku": sku})
        assert reused.status_code == 409, reused.json()
        assert reused.json()["data"]["error"] == "idempotency_conflict"
    fresh = {**body, "idempotency_key": "ex-2"}
    ghost = await api.post("/exchange", {**fresh, "sku": "ghost_offer"})
    assert (ghost.status_code, ghost.json()["data"]["error"]) == (400, "currency_invalid")
    unknown = await api.post("/exchange", {**fresh, "sku": "NO_SUCH_OFFER"})
    assert (unknown.status_code, unknown.json()) == (404, {
        "success": False, "message": "Offer not found", "data": {"error": "offer_not_found"}})
    retired = await sync_to_async(make_offer)("OLD_PACK", price="10", currency="INTERNAL",
                                              items=[(target, 1)], is_active=False)
    for extra in ({}, {"idempotency_key": "ex-3"}):
        gone = await api.post("/exchange", {"user_id": user.pk, "sku": retired.sku, **extra})
        assert (gone.status_code, gone.json()["message"]) == (404, "Offer not found")
    assert (await api.get("/wallet", user_id=user.pk)).json()["balances"]["INTERNAL"] == 700
