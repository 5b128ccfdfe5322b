"""Wallet endpoints: /balance, /user-products, /wallet, /wallet/batches, /wallet/consume."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.utils import timezone

from tests.billable.api.conftest import in_main_thread

pytestmark = pytest.mark.django_db


async def _batch(user: Any, product: Any, quantity: int, **fields: Any) -> Any:
    from billable.models import QuotaBatch

    return await QuotaBatch.objects.acreate(user=user, product=product,
                                            initial_quantity=quantity,
                                            remaining_quantity=quantity, **fields)


@in_main_thread
async def test_balance_reports_spendable_quota(api: Any, user: Any, bundle: Any,
                                               grant: Any) -> None:
    await sync_to_async(grant)(user, bundle)
    reply = await api.get("/balance", user_id=user.pk, product_key="tokens")
    assert reply.status_code == 200
    assert reply.json() == {"can_use": True, "product_key": "TOKENS", "remaining": 100,
                            "message": "Available: AI Tokens (100 left)"}
    empty = await api.get("/balance", user_id=user.pk, product_key="GEMS")
    assert empty.json()["can_use"] is False
    assert empty.json()["message"] == "No active quota for GEMS"


@in_main_thread
async def test_balance_for_unknown_user_never_creates_one(api: Any) -> None:
    reply = await api.get("/balance", provider="test", external_id="nobody", product_key="ANY")
    assert reply.status_code == 200
    assert reply.json()["can_use"] is False
    assert reply.json()["message"] == "user_id is required"
    assert not await get_user_model().objects.filter(username__contains="nobody").aexists()


@in_main_thread
async def test_balance_requires_product_key(api: Any, user: Any) -> None:
    assert (await api.get("/balance", user_id=user.pk)).status_code == 422
    blank = await api.get("/balance", user_id=user.pk, product_key=" ")
    assert blank.status_code == 400
    assert blank.json()["data"]["error"] == "invalid_product_key"


@in_main_thread
async def test_user_products_lists_spendable_batches(api: Any, user: Any, bundle: Any,
                                                     grant: Any, tokens: Any) -> None:
    await sync_to_async(grant)(user, bundle)
    await _batch(user, tokens, 5, expires_at=timezone.now() - timedelta(days=1))
    reply = await api.get("/user-products", user_id=user.pk)
    assert reply.status_code == 200
    rows = {row["product"]["product_key"]: row for row in reply.json()}
    assert set(rows) == {"TOKENS", "PREMIUM"}
    assert rows["TOKENS"]["total_quantity"] == 100
    assert rows["TOKENS"]["remaining"] == 100 and rows["TOKENS"]["used_quantity"] == 0
    assert rows["TOKENS"]["is_active"] is True
    only = await api.get("/user-products", user_id=user.pk, product_key="premium")
    assert [r["product"]["product_key"] for r in only.json()] == ["PREMIUM"]


@in_main_thread
async def test_user_products_requires_a_known_user(api: Any) -> None:
    for params in ({}, {"user_id": 987654}, {"external_id": "ghost"}):
        reply = await api.get("/user-products", **params)
        assert reply.status_code == 400
        assert reply.json()["message"] == "user_id is required"


@in_main_thread
async def test_wallet_counts_only_spendable_batches(api: Any, user: Any, tokens: Any,
                                                   premium: Any) -> None:
    now = timezone.now()
    await _batch(user, tokens, 10)
    await _batch(user, tokens, 7, expires_at=now - timedelta(seconds=1))
    await _batch(user, tokens, 3, valid_from=now + timedelta(days=1))
    await _batch(user, premium, 1, state="REVOKED")
    reply = await api.get("/wallet", user_id=user.pk)
    assert reply.status_code == 200
    assert reply.json() == {"user_id": user.pk, "balances": {"TOKENS": 10}}
    batches = await api.get("/wallet/batches", user_id=user.pk)
    assert batches.status_code == 200
    assert [(b["product"]["product_key"], b["remaining_quantity"], b["state"])
            for b in batches.json()] == [("TOKENS", 10, "ACTIVE")]


@pytest.mark.parametrize("path", ["/wallet", "/wallet/batches", "/wallet/transactions"])
@in_main_thread
async def test_wallet_reads_404_for_unknown_user(api: Any, path: str) -> None:
    for params in ({}, {"user_id": 424242}, {"provider": "test", "external_id": "missing"}):
        reply = await api.get(path, **params)
        assert reply.status_code == 404
        assert reply.json()["success"] is False
        assert reply.json()["message"] == "User not found"
    assert await get_user_model().objects.acount() == 0


@in_main_thread
async def test_consume_spans_batches_oldest_first(api: Any, user: Any, tokens: Any) -> None:
    base = timezone.now()
    for age in (2, 1, 0):
        await _batch(user, tokens, 10, created_at=base - timedelta(days=age))
    reply = await api.post("/wallet/consume", {"user_id": user.pk, "product_key": "tokens",
                                               "action_type": "api_test", "amount": 25})
    assert reply.status_code == 200
    body = reply.json()
    assert body["success"] is True and body["message"] == "Quota consumed"
    assert body["data"]["remaining"] == 5
    batches = (await api.get("/wallet/batches", user_id=user.pk)).json()
    assert [b["remaining_quantity"] for b in batches] == [5]


@in_main_thread
async def test_consume_failures_are_400_with_service_message(api: Any, user: Any,
                                                            tokens: Any) -> None:
    none = await api.post("/wallet/consume", {"user_id": user.pk, "product_key": "TOKENS",
                                              "action_type": "x"})
    assert none.status_code == 400
    assert none.json()["message"] == "No active quota for TOKENS"
    assert none.json()["data"]["error"] == "quota_exhausted"
    await _batch(user, tokens, 2)
    short = await api.post("/wallet/consume", {"user_id": user.pk, "product_key": "TOKENS",
                                               "action_type": "x", "amount": 3})
    assert short.status_code == 400
    assert short.json()["message"] == "Insufficient balance"
    assert short.json()["data"]["error"] == "insufficient_funds"
    assert (await api.get("/wallet", user_id=user.pk)).json()["balances"] == {"TOKENS": 2}


@in_main_thread
async def test_consume_idempotency_replay_and_conflict(api: Any, user: Any, tokens: Any) -> None:
    await _batch(user, tokens, 10)
    payload = {"user_id": user.pk, "product_key": "TOKENS", "action_type": "report",
               "idempotency_key": "report-1", "amount": 2}
    first = await api.post("/wallet/consume", payload)
    replay = await api.post("/wallet/consume", payload)
    assert first.status_code == replay.status_code == 200
    assert replay.json()["data"]["usage_id"] == first.json()["data"]["usage_id"]
    assert "idempotent" in replay.json()["data"]["message"]
    conflict = await api.post("/wallet/consume", {**payload, "amount": 3})
    assert conflict.status_code == 409
    assert conflict.json()["success"] is False
    assert conflict.json()["data"]["error"] == "idempotency_conflict"
    assert (await api.get("/wallet", user_id=user.pk)).json()["balances"] == {"TOKENS": 8}


@in_main_thread
async def test_consume_creates_user_for_new_identity(api: Any, tokens: Any) -> None:
    reply = await api.post("/wallet/consume", {"provider": "test_post", "external_id": "new",
                                               "product_key": "TOKENS"})
    assert reply.status_code == 400
    assert await get_user_model().objects.filter(username="billable_test_post_new").aexists()


@in_main_thread
async def test_consume_user_errors(api: Any, tokens: Any) -> None:
    missing = await api.post("/wallet/consume", {"product_key": "TOKENS"})
    assert missing.status_code == 400
    assert missing.json()["message"] == "user_id is required"
    unknown = await api.post("/wallet/consume", {"user_id": 31337, "product_key": "TOKENS"})
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "User not found"


@in_main_thread
async def test_consume_rejects_bad_amounts(api: Any, user: Any, tokens: Any) -> None:
    await _batch(user, tokens, 10)
    for amount in (0, -1, 2**31, 1.5, "many", None):
        reply = await api.post("/wallet/consume", {"user_id": user.pk, "product_key": "TOKENS",
                                                   "amount": amount})
        assert reply.status_code == 422, amount
    assert (await api.get("/wallet", user_id=user.pk)).json()["balances"] == {"TOKENS": 10}
