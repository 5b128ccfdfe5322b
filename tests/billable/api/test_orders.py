"""Order endpoints: create, read, confirm, cancel, refund."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from tests.billable.api.conftest import in_main_thread

pytestmark = pytest.mark.django_db


async def _order(api: Any, user: Any, items: list[dict[str, Any]], **extra: Any) -> Any:
    reply = await api.post("/orders", {"user_id": user.pk, "items": items, **extra})
    assert reply.status_code == 200, reply.body
    return reply.json()


@in_main_thread
async def test_order_flow_create_confirm_read(api: Any, user: Any, bundle: Any,
                                              credit_pack: Any) -> None:
    order = await _order(api, user, [{"sku": "pack_starter", "quantity": 1},
                                     {"sku": "OFF_CREDITS_100", "quantity": 2, "price": "0.01"}],
                         metadata={"source": "web"})
    assert order["status"] == "pending" and order["total_amount"] == "40.00"
    assert order["currency"] == "USD" and order["metadata"] == {"source": "web"}
    assert [(i["sku"], i["quantity"], i["price"]) for i in order["items"]] == [
        ("PACK_STARTER", 1, "20.00"), ("OFF_CREDITS_100", 2, "10.00")]

    paid = await api.post(f"/orders/{order['id']}/confirm", {"payment_id": "PAY-1"})
    assert paid.status_code == 200
    assert paid.json()["message"] == "Order paid and products activated"
    assert paid.json()["data"]["status"] == "paid"
    assert paid.json()["data"]["payment_id"] == "PAY-1"
    balances = (await api.get("/wallet", user_id=user.pk)).json()["balances"]
    assert balances == {"TOKENS": 100, "PREMIUM": 1, "INTERNAL": 200}

    replay = await api.post(f"/orders/{order['id']}/confirm", {"payment_id": "PAY-1"})
    assert replay.status_code == 200
    assert (await api.get("/wallet", user_id=user.pk)).json()["balances"] == balances

    read = await api.get(f"/orders/{order['id']}")
    assert read.status_code == 200
    assert read.json()["status"] == "paid" and read.json()["paid_at"]


@in_main_thread
async def test_create_order_errors(api: Any, user: Any, bundle: Any, make_offer: Any) -> None:
    from asgiref.sync import sync_to_async

    unknown = await api.post("/orders", {"user_id": user.pk,
                                         "items": [{"sku": "nonexistent_sku", "quantity": 1}]})
    assert unknown.status_code == 400
    assert "Offer not found for sku" in unknown.json()["message"]
    no_sku = await api.post("/orders", {"user_id": user.pk, "items": [{"quantity": 1}]})
    assert no_sku.status_code == 400 and "Item must have 'sku'" in no_sku.json()["message"]
    for quantity in (0, -2, "x"):
        bad = await api.post("/orders", {"user_id": user.pk,
                                         "items": [{"sku": "PACK_STARTER", "quantity": quantity}]})
        assert bad.status_code == 400, quantity
    await sync_to_async(make_offer)("EUR_PACK", price="5", currency="EUR")
    mixed = await api.post("/orders", {"user_id": user.pk, "items": [
        {"sku": "PACK_STARTER", "quantity": 1}, {"sku": "EUR_PACK", "quantity": 1}]})
    assert mixed.status_code == 400
    no_user = await api.post("/orders", {"items": [{"sku": "PACK_STARTER", "quantity": 1}]})
    assert no_user.status_code == 400 and no_user.json()["message"] == "user_id is required"
    assert (await api.post("/orders", {"user_id": user.pk})).status_code == 422


@in_main_thread
async def test_create_order_creates_user_for_new_identity(api: Any, bundle: Any) -> None:
    reply = await api.post("/orders", {"provider": "test", "external_id": "new_posts",
                                       "items": [{"sku": "PACK_STARTER", "quantity": 1}]})
    assert reply.status_code == 200
    user = await get_user_model().objects.aget(username="billable_test_new_posts")
    assert reply.json()["user_id"] == user.pk


@in_main_thread
async def test_unknown_or_invalid_order_ids(api: Any) -> None:
    for order_id in ("999999", "0", "-1", str(2**63), "abc"):
        await _check_order_id(api, order_id)


async def _check_order_id(api: Any, order_id: str) -> None:
    expected = 404 if order_id == "999999" else 422
    for method, path in (("GET", ""), ("POST", "/confirm"), ("POST", "/cancel"),
                         ("POST", "/refund")):
        if method == "GET":
            reply = await api.get(f"/orders/{order_id}{path}")
        else:
            reply = await api.post(f"/orders/{order_id}{path}", {})
        assert reply.status_code == expected, (method, path)
        if expected == 404:
            assert reply.json()["message"] == "Order not found"
            assert reply.json()["data"]["error"] == "order_not_found"


@in_main_thread
async def test_confirm_conflicts_are_409_and_grant_nothing(api: Any, user: Any,
                                                           bundle: Any) -> None:
    first = await _order(api, user, [{"sku": "PACK_STARTER", "quantity": 1}])
    second = await _order(api, user, [{"sku": "PACK_STARTER", "quantity": 1}])
    assert (await api.post(f"/orders/{first['id']}/confirm",
                           {"payment_id": "P1", "payment_method": "stripe"})).status_code == 200
    other_payment = await api.post(f"/orders/{first['id']}/confirm",
                                   {"payment_id": "P2", "payment_method": "stripe"})
    assert other_payment.status_code == 409
    assert other_payment.json()["data"]["error"] == "payment_conflict"
    reused = await api.post(f"/orders/{second['id']}/confirm",
                            {"payment_id": "P1", "payment_method": "stripe"})
    assert reused.status_code == 409
    assert (await api.get("/wallet", user_id=user.pk)).json()["balances"]["TOKENS"] == 100
    assert (await api.get(f"/orders/{second['id']}")).json()["status"] == "pending"


@in_main_thread
async def test_cancel_then_confirm_is_refused(api: Any, user: Any, bundle: Any) -> None:
    order = await _order(api, user, [{"sku": "PACK_STARTER", "quantity": 1}])
    cancelled = await api.post(f"/orders/{order['id']}/cancel", {"reason": "changed mind"})
    assert cancelled.status_code == 200
    assert cancelled.json()["success"] is True
    assert cancelled.json()["data"]["status"] == "cancelled"
    confirm = await api.post(f"/orders/{order['id']}/confirm", {"payment_id": "late"})
    assert confirm.status_code == 409
    assert confirm.json()["data"]["error"] == "order_state_conflict"
    assert (await api.get("/wallet", user_id=user.pk)).json()["balances"] == {}


@in_main_thread
async def test_cancel_paid_order_is_409(api: Any, user: Any, bundle: Any) -> None:
    order = await _order(api, user, [{"sku": "PACK_STARTER", "quantity": 1}])
    await api.post(f"/orders/{order['id']}/confirm", {"payment_id": "X"})
    reply = await api.post(f"/orders/{order['id']}/cancel", {})
    assert reply.status_code == 409
    assert reply.json()["success"] is False


@in_main_thread
async def test_refund_revokes_products(api: Any, user: Any, bundle: Any) -> None:
    order = await _order(api, user, [{"sku": "PACK_STARTER", "quantity": 1}])
    not_paid = await api.post(f"/orders/{order['id']}/refund", {})
    assert not_paid.status_code == 400
    assert not_paid.json()["message"] == (
        "Failed to process refund. Order might not be in PAID status.")
    await api.post(f"/orders/{order['id']}/confirm", {"payment_id": "API-PAY"})
    await api.post("/wallet/consume", {"user_id": user.pk, "product_key": "TOKENS",
                                       "amount": 20})
    refunded = await api.post(f"/orders/{order['id']}/refund", {"reason": "API Refund Test"})
    assert refunded.status_code == 200
    assert refunded.json()["message"] == "Order refunded and products revoked"
    assert refunded.json()["data"]["status"] == "refunded"
    assert (await api.get("/wallet", user_id=user.pk)).json()["balances"] == {}
    assert (await api.get(f"/orders/{order['id']}")).json()["status"] == "refunded"
    again = await api.post(f"/orders/{order['id']}/refund", {})
    assert again.status_code == 400


@in_main_thread
async def test_a_retried_order_with_its_key_is_the_same_order(api: Any, user: Any,
                                                             credit_pack: Any) -> None:
    from billable.models import Order

    items = [{"sku": "off_credits_100", "quantity": 2}]
    first = await _order(api, user, items, idempotency_key="cart-1", metadata={"cart": 1})
    again = await _order(api, user, [{"sku": " OFF_CREDITS_100 ", "quantity": 2}],
                         idempotency_key="cart-1", metadata={"cart": 1})
    assert again == first  # the same order (SKU spelling normalised), nothing new created
    paid = await api.post(f"/orders/{first['id']}/confirm", {"payment_id": "PAY-9"})
    assert paid.status_code == 200
    after_payment = await _order(api, user, items, idempotency_key="cart-1",
                                 metadata={"cart": 1})
    assert after_payment["id"] == first["id"] and after_payment["status"] == "paid"

    other = await api.post("/orders", {"user_id": user.pk, "idempotency_key": "cart-1",
                                       "items": [{"sku": "OFF_CREDITS_100", "quantity": 3}]})
    assert other.status_code == 409
    assert other.json()["data"]["error"] == "idempotency_conflict"
    fresh = await _order(api, user, items, idempotency_key="cart-2", metadata={"cart": 1})
    assert fresh["id"] != first["id"]
    assert await Order.objects.filter(user=user).acount() == 2
