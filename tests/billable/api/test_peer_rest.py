"""Peer suite, written from the contract: identify, catalog and the wallet endpoints (SPEC §6).

Black box: requests go through Django's test client on ``/api/v1/billing/`` (mounted with
``include("billable.urls")``); data is set up through the public models and services.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from tests.billable.api.peer_support import (
    ISO,
    Peer,
    Shop,
    assert_refused,
    give,
    identity_count,
    new_user,
)

pytestmark = pytest.mark.django_db

User = get_user_model()



# -- POST /identify -------------------------------------------------------------------------------


def test_identify_creates_user_and_identity_then_finds_them(peer: Peer) -> None:
    first = peer.ok("POST", "/identify", {"provider": "telegram", "external_id": "777",
                                          "profile": {"username": "neo", "lang": "en"}})
    assert set(first) == {"user_id", "identity_id", "provider", "external_id",
                          "created_identity", "created_user", "trial_eligible", "metadata"}
    assert first["provider"] == "telegram" and first["external_id"] == "777"
    assert first["created_identity"] is True and first["created_user"] is True
    assert first["trial_eligible"] is True
    assert first["metadata"] == {"username": "neo", "lang": "en"}
    assert User.objects.get(pk=first["user_id"]).username == "billable_telegram_777"

    again = peer.ok("POST", "/identify", {"provider": "telegram", "external_id": "777"})
    assert (again["user_id"], again["identity_id"]) == (first["user_id"], first["identity_id"])
    assert again["created_identity"] is False and again["created_user"] is False
    assert again["metadata"] == {"username": "neo", "lang": "en"}  # not wiped when absent

    merged = peer.ok("POST", "/identify", {"provider": "telegram", "external_id": "777",
                                           "profile": {"lang": "ru", "first_name": "T"}})
    assert merged["metadata"] == {"username": "neo", "lang": "ru", "first_name": "T"}


def test_identify_defaults_the_provider_and_accepts_integer_ids(peer: Peer) -> None:
    answer = peer.ok("POST", "/identify", {"external_id": 5454776146})
    assert answer["provider"] == "default" and answer["external_id"] == "5454776146"
    assert User.objects.get(pk=answer["user_id"]).username == "billable_default_5454776146"
    same = peer.ok("POST", "/identify", {"external_id": "5454776146"})
    assert same["user_id"] == answer["user_id"]


def test_identify_never_attaches_to_an_unrelated_existing_account(peer: Peer) -> None:
    squatter = new_user("billable_default_123")
    answer = peer.ok("POST", "/identify", {"external_id": "123"})
    assert answer["created_user"] is True
    assert answer["user_id"] != squatter.pk
    assert not squatter.billable_external_identities.exists()


def test_identify_reports_trial_eligibility(peer: Peer, shop: Shop) -> None:
    ref = {"provider": "telegram", "external_id": "900"}
    assert peer.ok("POST", "/identify", ref)["trial_eligible"] is True
    peer.ok("POST", "/demo/trial-grant", {**ref, "sku": "trial_free"})
    assert peer.ok("POST", "/identify", ref)["trial_eligible"] is False


# -- products and catalog -------------------------------------------------------------------------


def test_products_lists_active_products_and_finds_one_by_key(peer: Peer, shop: Shop) -> None:
    from billable.models import Product

    Product.objects.create(product_key="RETIRED", name="Retired", product_type="quantity",
                           is_active=False)
    listed = peer.ok("GET", "/products")
    keys = [item["product_key"] for item in listed]
    assert set(keys) == {"TOKENS", "PREMIUM", "GEMS"}
    assert [item["name"] for item in listed] == sorted(item["name"] for item in listed)
    one = peer.ok("GET", "/products/tokens")
    assert one["product_key"] == "TOKENS" and one["name"] == "AI Tokens"
    assert one["product_type"] == "quantity"
    for missing in ("retired", "NOPE"):
        answer = peer.get(f"/products/{missing}")
        assert_refused(answer, 404)
        assert answer.body["message"] == "Product not found"


def test_catalog_lists_active_offers_with_nested_items(peer: Peer, shop: Shop) -> None:
    shop.welcome.is_active = False
    shop.welcome.save()
    offers = {offer["sku"]: offer for offer in peer.ok("GET", "/catalog")}
    assert "OFF_WELCOME_TRIAL" not in offers
    assert offers["PACK_10"]["price"] == "9.99"
    assert offers["PACK_10"]["currency"] == "USD"
    items = offers["OFF_PREMIUM_PACK"]["items"]
    assert [(i["product"]["product_key"], i["quantity"], i["period_unit"], i["period_value"])
            for i in items] == [("TOKENS", 50, "forever", None), ("PREMIUM", 1, "days", 30)]


def test_catalog_filter_keeps_the_order_asked_and_ignores_case(peer: Peer, shop: Shop) -> None:
    answer = peer.get("/catalog", {"sku": ["premium_30", "PACK_10", "nope", "Gem_Pack"]})
    assert answer.status == 200
    assert [offer["sku"] for offer in answer.body] == ["PREMIUM_30", "PACK_10", "GEM_PACK"]


# -- GET /balance, /user-products, /wallet, /wallet/batches, /wallet/transactions -------------


def test_balance_answers_can_use_with_the_service_messages(peer: Peer, shop: Shop) -> None:
    user = new_user("bal")
    empty = peer.ok("GET", "/balance", {"user_id": user.pk, "product_key": "tokens"})
    assert empty == {"can_use": False, "product_key": "TOKENS", "remaining": 0,
                     "message": "No active quota for TOKENS"}
    give(user, shop.pack)
    full = peer.ok("GET", "/balance", {"user_id": user.pk, "product_key": "Tokens"})
    assert full == {"can_use": True, "product_key": "TOKENS", "remaining": 10,
                    "message": "Available: AI Tokens (10 left)"}


def test_balance_for_an_unknown_or_missing_user(peer: Peer, shop: Shop) -> None:
    for params in ({"user_id": 987654321}, {"external_id": "ghost"}, {}):
        answer = peer.ok("GET", "/balance", {**params, "product_key": "tokens"})
        assert answer["can_use"] is False
        assert answer["message"] == "user_id is required"
    assert identity_count() == 0  # GET never creates


def test_balance_requires_a_product_key(peer: Peer) -> None:
    user = new_user("nokey")
    assert_refused(peer.get("/balance", {"user_id": user.pk}))
    assert_refused(peer.get("/balance", {"user_id": user.pk, "product_key": ""}))
    assert_refused(peer.get("/balance", {"user_id": user.pk, "product_key": "   "}))


def test_user_products_lists_spendable_batches(peer: Peer, shop: Shop) -> None:
    user = new_user("up")
    give(user, shop.premium_pack)
    rows = peer.ok("GET", "/user-products", {"user_id": user.pk})
    assert len(rows) == 2
    for row in rows:
        assert set(row) == {"id", "product", "purchased_at", "expires_at", "total_quantity",
                            "used_quantity", "is_active", "remaining"}
        assert row["is_active"] is True and row["used_quantity"] == 0
    only = peer.ok("GET", "/user-products", {"user_id": user.pk, "product_key": "premium"})
    assert [row["product"]["product_key"] for row in only] == ["PREMIUM"]
    assert ISO.match(only[0]["expires_at"])


def test_user_products_without_a_user_is_400(peer: Peer) -> None:
    for params in ({}, {"user_id": 987654321}, {"external_id": "ghost"}):
        answer = peer.get("/user-products", params)
        assert_refused(answer, 400)
        assert answer.body["message"] == "user_id is required"


def test_wallet_counts_spendable_batches_only(peer: Peer, shop: Shop) -> None:
    from billable.models import QuotaBatch

    user = new_user("wal")
    give(user, shop.pack)
    give(user, shop.pack)
    give(user, shop.premium_30)
    expired, future = QuotaBatch.objects.filter(user=user, product=shop.tokens)[:2]
    QuotaBatch.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1))  # no expiry job has run
    QuotaBatch.objects.filter(pk=future.pk).update(
        valid_from=timezone.now() + timedelta(days=1))
    answer = peer.ok("GET", "/wallet", {"user_id": user.pk})
    assert answer == {"user_id": user.pk, "balances": {"PREMIUM": 1}}
    batches = peer.ok("GET", "/wallet/batches", {"user_id": user.pk})
    assert [(b["product"]["product_key"], b["state"]) for b in batches] == [("PREMIUM", "ACTIVE")]
    assert set(batches[0]) == {"id", "product", "initial_quantity", "remaining_quantity",
                               "valid_from", "expires_at", "state"}
    checked = peer.ok("GET", "/balance", {"user_id": user.pk, "product_key": "tokens"})
    assert checked["can_use"] is False


def test_wallet_by_identity_and_user_id_wins(peer: Peer, shop: Shop) -> None:
    alice = peer.ok("POST", "/identify", {"provider": "telegram", "external_id": "a1"})
    bob = peer.ok("POST", "/identify", {"provider": "telegram", "external_id": "b1"})
    give(User.objects.get(pk=alice["user_id"]), shop.pack)
    by_identity = peer.ok("GET", "/wallet", {"provider": "telegram", "external_id": "a1"})
    assert by_identity == {"user_id": alice["user_id"], "balances": {"TOKENS": 10}}
    both = peer.ok("GET", "/wallet", {"user_id": bob["user_id"], "provider": "telegram",
                                      "external_id": "a1"})
    assert both == {"user_id": bob["user_id"], "balances": {}}
    # the default provider is not "telegram"
    assert peer.get("/wallet", {"external_id": "a1"}).status == 404
    # an unknown user_id still wins over a known identity
    ghost = peer.get("/wallet", {"user_id": 987654321, "provider": "telegram",
                                 "external_id": "a1"})
    assert_refused(ghost, 404)
    balance = peer.ok("GET", "/balance", {"user_id": 987654321, "provider": "telegram",
                                          "external_id": "a1", "product_key": "tokens"})
    assert balance["can_use"] is False and balance["message"] == "user_id is required"


def test_transactions_are_paged_by_100_with_a_cursor(peer: Peer, shop: Shop) -> None:
    from billable.services import TransactionService

    user = new_user("pages")
    give(user, shop.pack)
    for _ in range(105):
        TransactionService.grant_offer(user.pk, shop.trial, source="manual_grant")
    first = peer.get("/wallet/transactions", {"user_id": user.pk})
    assert first.status == 200 and len(first.body) == 100
    cursor = first.headers.get("X-Next-Cursor")
    assert cursor
    second = peer.get("/wallet/transactions", {"user_id": user.pk, "cursor": cursor})
    assert len(second.body) == 6 and "X-Next-Cursor" not in second.headers
    ids = {row["id"] for row in first.body} | {row["id"] for row in second.body}
    assert len(ids) == 106
    assert_refused(peer.get("/wallet/transactions", {"user_id": user.pk, "cursor": "garbage"}),
                   400)


# -- POST /wallet/consume ----------------------------------------------------------------------


def test_consume_success_and_failure_envelopes(peer: Peer, shop: Shop) -> None:
    user = new_user("eat")
    nothing = peer.post("/wallet/consume", {"user_id": user.pk, "product_key": "tokens"})
    assert_refused(nothing, 400)
    assert nothing.body["success"] is False
    assert nothing.body["message"] == "No active quota for TOKENS"
    assert nothing.body["data"]["error"] == "quota_exhausted"
    give(user, shop.pack)
    done = peer.ok("POST", "/wallet/consume", {"user_id": user.pk, "product_key": "TOKENS",
                                               "action_type": "usage", "action_id": "job-1",
                                               "metadata": {"doc": 7}})
    assert done["success"] is True and done["message"] == "Quota consumed"
    data = done["data"]
    assert data["success"] is True and data["remaining"] == 9 and data["usage_id"]
    assert data["metadata"]["doc"] == 7
    short = peer.post("/wallet/consume", {"user_id": user.pk, "product_key": "tokens",
                                          "amount": 10})
    assert_refused(short, 400)
    assert short.body["message"] == "Insufficient balance"
    assert short.body["data"]["error"] == "insufficient_funds"
    spent = peer.ok("POST", "/wallet/consume", {"user_id": user.pk, "product_key": "tokens",
                                                "amount": 9})
    assert spent["data"]["remaining"] == 0


def test_consume_idempotency_replay_and_conflict(peer: Peer, shop: Shop) -> None:
    user = new_user("idem")
    give(user, shop.pack)
    body = {"user_id": user.pk, "product_key": "tokens", "idempotency_key": "k-1", "amount": 2}
    first = peer.ok("POST", "/wallet/consume", body)
    replay = peer.ok("POST", "/wallet/consume", {**body, "product_key": "TOKENS"})
    assert replay["data"]["usage_id"] == first["data"]["usage_id"]
    assert "idempotent" in replay["data"]["message"]
    assert peer.ok("GET", "/wallet", {"user_id": user.pk})["balances"] == {"TOKENS": 8}
    conflict = peer.post("/wallet/consume", {**body, "amount": 3})
    assert_refused(conflict, 409)
    assert conflict.body["data"]["error"] == "idempotency_conflict"
    assert peer.ok("GET", "/wallet", {"user_id": user.pk})["balances"] == {"TOKENS": 8}


def test_consume_never_creates_an_account_from_a_bare_user_id(peer: Peer, shop: Shop) -> None:
    users = User.objects.count()
    answer = peer.post("/wallet/consume", {"user_id": 987654321, "product_key": "tokens"})
    assert_refused(answer, 404)
    assert answer.body["message"] == "User not found"
    keyed = peer.post("/wallet/consume", {"user_id": 987654321, "product_key": "tokens",
                                          "idempotency_key": "x"})
    assert_refused(keyed, 404)
    assert User.objects.count() == users


def test_consume_user_id_wins_over_an_external_id(peer: Peer, shop: Shop) -> None:
    user = new_user("winner")
    give(user, shop.pack)
    done = peer.ok("POST", "/wallet/consume", {"user_id": user.pk, "external_id": "other",
                                               "product_key": "tokens"})
    assert done["data"]["remaining"] == 9
    assert identity_count() == 0


@pytest.mark.parametrize("amount", [0, -1, -100, 2**31, 10**30, 1.5, "1.5", "two", True,
                                    False, None, [1], {"n": 1}])
def test_consume_refuses_amounts_that_are_not_positive_ints(peer: Peer, shop: Shop,
                                                             amount: Any) -> None:
    user = new_user("amt")
    give(user, shop.pack)
    answer = peer.post("/wallet/consume", {"user_id": user.pk, "product_key": "tokens",
                                           "amount": amount})
    assert_refused(answer)
    assert peer.ok("GET", "/wallet", {"user_id": user.pk})["balances"] == {"TOKENS": 10}


@pytest.mark.parametrize(("amount", "left"), [("2", 8), (2.0, 8), (2**31 - 1, None)])
def test_consume_reads_integral_numbers_as_documented(peer: Peer, shop: Shop, amount: Any,
                                                      left: int | None) -> None:
    """docs/api.md: integer fields take integral numbers, also as strings (as query
    parameters are); the largest amount is valid and only short of balance."""
    user = new_user("amt-ok")
    give(user, shop.pack)
    answer = peer.post("/wallet/consume", {"user_id": user.pk, "product_key": "tokens",
                                           "amount": amount})
    if left is None:
        assert_refused(answer, 400)
        assert answer.body["message"] == "Insufficient balance"
    else:
        assert answer.status == 200, answer.text
        assert answer.body["data"]["remaining"] == left


def test_period_products_are_not_depleted_by_use(peer: Peer, shop: Shop) -> None:
    user = new_user("period")
    give(user, shop.premium_30)
    for _ in range(3):
        peer.ok("POST", "/wallet/consume", {"user_id": user.pk, "product_key": "premium"})
    assert peer.ok("GET", "/balance", {"user_id": user.pk, "product_key": "premium"})["can_use"]
