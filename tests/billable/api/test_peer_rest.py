"""Peer suite, written from the contract: every endpoint of SPEC §6, its statuses and shapes.

Black box: requests go through Django's test client on ``/api/v1/billing/`` (mounted with
``include("billable.urls")``); data is set up through the public models and services.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from tests.billable.api.peer_support import (
    Peer,
    Shop,
    assert_refused,
    build_shop,
    give,
    new_user,
)

pytestmark = pytest.mark.django_db

User = get_user_model()
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


@pytest.fixture
def shop() -> Shop:
    return build_shop()


@pytest.fixture
def peer() -> Peer:
    return Peer()


def _identity_count() -> int:
    from billable.models import ExternalIdentity

    return ExternalIdentity.objects.count()


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
    assert _identity_count() == 0  # GET never creates


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
    assert _identity_count() == 0


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


# -- POST /demo/trial-grant ----------------------------------------------------------------------


def test_trial_grant_once_per_identity(peer: Peer, shop: Shop) -> None:
    ref = {"provider": "telegram", "external_id": "t-1"}
    granted = peer.ok("POST", "/demo/trial-grant", {**ref, "sku": "trial_free",
                                                    "metadata": {"campaign": "x"}})
    assert granted["success"] is True and granted["message"] == "Trial granted"
    assert granted["data"]["products"] == ["AI Tokens"]
    assert granted["data"]["metadata"]["campaign"] == "x"
    assert "identities" in granted["data"]["metadata"]
    replay = peer.post("/demo/trial-grant", {**ref, "sku": "TRIAL_FREE"})
    assert_refused(replay, 400)
    assert replay.body["data"]["error"] == "trial_already_used"
    uid = peer.ok("POST", "/identify", ref)["user_id"]
    assert peer.ok("GET", "/wallet", {"user_id": uid})["balances"] == {"TOKENS": 5}


def test_trial_grant_by_user_id_uses_the_users_own_identity(peer: Peer, shop: Shop) -> None:
    user = new_user("trial-user")
    peer.ok("POST", "/demo/trial-grant", {"user_id": user.pk, "sku": "trial_free"})
    again = peer.post("/demo/trial-grant", {"user_id": user.pk, "sku": "trial_free"})
    assert_refused(again, 400)
    assert again.body["data"]["error"] == "trial_already_used"


def test_trial_grant_shares_the_identity_given_explicitly(peer: Peer, shop: Shop) -> None:
    one, two = new_user("t-a"), new_user("t-b")
    peer.ok("POST", "/demo/trial-grant", {"user_id": one.pk, "sku": "trial_free",
                                          "identities": {"telegram": 5454776146}})
    second = peer.post("/demo/trial-grant", {"user_id": two.pk, "sku": "trial_free",
                                             "identities": {"telegram": "5454776146"}})
    assert_refused(second, 400)
    assert second.body["data"]["error"] == "trial_already_used"


# -- POST /exchange ------------------------------------------------------------------------------


def test_exchange_spends_currency_and_grants_the_offer(peer: Peer, shop: Shop) -> None:
    user = new_user("trader")
    give(user, shop.gem_pack)
    done = peer.ok("POST", "/exchange", {"user_id": user.pk, "sku": "tokens_for_gems",
                                         "metadata": {"src": "shop"}})
    assert done["success"] is True and done["message"] == "Exchange successful"
    assert done["data"]["success"] is True and done["data"]["message"] == "Exchanged"
    assert done["data"]["metadata"] == {"src": "shop", "price": 30}
    wallet = peer.ok("GET", "/wallet", {"user_id": user.pk})["balances"]
    assert wallet == {"GEMS": 70, "TOKENS": 10}


def test_exchange_refusals(peer: Peer, shop: Shop) -> None:
    user = new_user("poor")
    unknown = peer.post("/exchange", {"user_id": user.pk, "sku": "nope"})
    assert_refused(unknown, 404)
    assert unknown.body["message"] == "Offer not found"
    shop.tokens_for_gems.is_active = False
    shop.tokens_for_gems.save()
    inactive = peer.post("/exchange", {"user_id": user.pk, "sku": "tokens_for_gems"})
    assert_refused(inactive, 404)
    assert inactive.body["message"] == "Offer not found"
    shop.tokens_for_gems.is_active = True
    shop.tokens_for_gems.save()
    broke = peer.post("/exchange", {"user_id": user.pk, "sku": "tokens_for_gems"})
    assert_refused(broke, 400)
    not_currency = peer.post("/exchange", {"user_id": user.pk, "sku": "pack_10"})
    assert_refused(not_currency, 400)
    assert peer.ok("GET", "/wallet", {"user_id": user.pk})["balances"] == {}


def test_exchange_is_idempotent_with_a_key(peer: Peer, shop: Shop) -> None:
    user = new_user("idem-trader")
    give(user, shop.gem_pack)
    body = {"user_id": user.pk, "sku": "tokens_for_gems", "idempotency_key": "ex-1"}
    peer.ok("POST", "/exchange", body)
    peer.ok("POST", "/exchange", body)
    assert peer.ok("GET", "/wallet", {"user_id": user.pk})["balances"] == {"GEMS": 70,
                                                                           "TOKENS": 10}


# -- orders ---------------------------------------------------------------------------------------

ORDER_KEYS = {"id", "user_id", "status", "total_amount", "currency", "payment_method",
              "payment_id", "created_at", "paid_at", "items", "metadata"}


def _order(peer: Peer, user: Any, *items: tuple[str, int], **extra: Any) -> dict[str, Any]:
    return peer.ok("POST", "/orders", {"user_id": user.pk, **extra,
                                       "items": [{"sku": s, "quantity": q} for s, q in items]})


def test_order_lifecycle_create_read_confirm(peer: Peer, shop: Shop) -> None:
    user = new_user("buyer")
    order = peer.ok("POST", "/orders", {"user_id": user.pk, "metadata": {"cart": 1}, "items": [
        {"sku": "pack_10", "quantity": 2, "price": "0.01"}, {"sku": "PREMIUM_30"}]})
    assert set(order) == ORDER_KEYS
    assert order["status"] == "pending" and order["user_id"] == user.pk
    assert order["total_amount"] == "24.97" and order["currency"] == "USD"
    assert order["metadata"] == {"cart": 1} and order["paid_at"] is None
    assert [(i["sku"], i["quantity"], i["price"]) for i in order["items"]] == [
        ("PACK_10", 2, "9.99"), ("PREMIUM_30", 1, "4.99")]
    assert set(order["items"][0]) == {"id", "sku", "quantity", "price"}
    assert peer.ok("GET", f"/orders/{order['id']}") == order

    confirmed = peer.ok("POST", f"/orders/{order['id']}/confirm",
                        {"payment_id": "pay-1", "payment_method": "stripe"})
    assert confirmed["success"] is True
    assert confirmed["message"] == "Order paid and products activated"
    paid = confirmed["data"]
    assert set(paid) == ORDER_KEYS
    assert (paid["status"], paid["payment_id"], paid["payment_method"]) == (
        "paid", "pay-1", "stripe")
    assert ISO.match(paid["paid_at"])
    assert peer.ok("GET", "/wallet", {"user_id": user.pk})["balances"] == {"TOKENS": 20,
                                                                           "PREMIUM": 1}
    replay = peer.ok("POST", f"/orders/{order['id']}/confirm", {"payment_id": "pay-1"})
    assert replay["data"]["status"] == "paid"
    assert peer.ok("GET", "/wallet", {"user_id": user.pk})["balances"]["TOKENS"] == 20
    other = peer.post(f"/orders/{order['id']}/confirm", {"payment_id": "pay-2"})
    assert_refused(other, 409)
    assert peer.ok("GET", "/wallet", {"user_id": user.pk})["balances"]["TOKENS"] == 20


def test_one_payment_id_cannot_pay_two_orders(peer: Peer, shop: Shop) -> None:
    user = new_user("double")
    first, second = _order(peer, user, ("pack_10", 1)), _order(peer, user, ("pack_10", 1))
    peer.ok("POST", f"/orders/{first['id']}/confirm", {"payment_id": "same"})
    answer = peer.post(f"/orders/{second['id']}/confirm", {"payment_id": "same"})
    assert_refused(answer, 409)
    assert peer.ok("GET", f"/orders/{second['id']}")["status"] == "pending"


def test_order_creation_by_external_identity(peer: Peer, shop: Shop) -> None:
    squatter = new_user("billable_web_cust-9")
    order = peer.ok("POST", "/orders", {"provider": "web", "external_id": "cust-9",
                                        "items": [{"sku": "pack_10", "quantity": 1}]})
    assert order["user_id"] != squatter.pk
    buyer = User.objects.get(pk=order["user_id"])
    assert buyer.username.startswith("billable_web_cust-9")
    assert buyer.billable_external_identities.get().external_id == "cust-9"
    assert not squatter.billable_external_identities.exists()
    again = peer.ok("POST", "/orders", {"provider": "web", "external_id": "cust-9",
                                        "items": [{"sku": "pack_10"}]})
    assert again["user_id"] == buyer.pk


@pytest.mark.parametrize(("items", "message"), [
    ([{"sku": "nope", "quantity": 1}], "Offer not found for sku: 'nope'"),
    ([{"quantity": 1}], "Item must have 'sku'"),
    ([{"sku": "", "quantity": 1}], "Item must have 'sku'"),
    ([{"sku": "pack_10", "quantity": 0}], None),
    ([{"sku": "pack_10", "quantity": -2}], None),
    ([{"sku": "pack_10", "quantity": 1.5}], None),
    ([{"sku": "pack_10", "quantity": "1"}], None),
    ([{"sku": "pack_10", "quantity": True}], None),
    ([{"sku": "pack_10", "quantity": 10**30}], None),
    ([{"sku": "pack_10"}, {"sku": "tokens_for_gems"}], None),  # mixed currencies
    ([], None),
    ("pack_10", None),
    ({"sku": "pack_10"}, None),
    (["pack_10"], None),
    ([None], None),
    ([{"sku": ["pack_10"]}], None),
])
def test_order_creation_refusals(peer: Peer, shop: Shop, items: Any,
                                 message: str | None) -> None:
    from billable.models import Order

    user = new_user("bad-order")
    answer = peer.post("/orders", {"user_id": user.pk, "items": items})
    assert_refused(answer)
    if message is not None:
        assert answer.status == 400
        assert answer.body["message"] == message
    assert not Order.objects.exists()


def test_inactive_offers_cannot_be_ordered(peer: Peer, shop: Shop) -> None:
    shop.pack.is_active = False
    shop.pack.save()
    answer = peer.post("/orders", {"user_id": new_user("late").pk,
                                   "items": [{"sku": "PACK_10", "quantity": 1}]})
    assert_refused(answer, 400)
    assert answer.body["message"] == "Offer not found for sku: 'PACK_10'"


def test_unknown_orders_are_404(peer: Peer) -> None:
    for answer in (peer.get("/orders/987654"),
                   peer.post("/orders/987654/confirm", {"payment_id": "x"}),
                   peer.post("/orders/987654/cancel", {}),
                   peer.post("/orders/987654/refund", {})):
        assert_refused(answer, 404)
    assert peer.get("/orders/987654").body["message"] == "Order not found"


def test_refund_revokes_and_only_paid_orders_refund(peer: Peer, shop: Shop) -> None:
    user = new_user("refunder")
    order = _order(peer, user, ("pack_10", 1))
    pending = peer.post(f"/orders/{order['id']}/refund", {})
    assert_refused(pending, 400)
    assert pending.body["message"] == ("Failed to process refund. "
                                       "Order might not be in PAID status.")
    peer.ok("POST", f"/orders/{order['id']}/confirm", {"payment_id": "r-1"})
    refunded = peer.ok("POST", f"/orders/{order['id']}/refund", {"reason": "asked"})
    assert refunded == {"success": True, "message": "Order refunded and products revoked",
                        "data": refunded["data"]}
    assert refunded["data"]["status"] == "refunded"
    assert peer.ok("GET", "/wallet", {"user_id": user.pk})["balances"] == {}
    again = peer.post(f"/orders/{order['id']}/refund", {})
    assert_refused(again, 400)
    confirm = peer.post(f"/orders/{order['id']}/confirm", {"payment_id": "r-1"})
    assert_refused(confirm, 409)
    assert peer.ok("GET", "/wallet", {"user_id": user.pk})["balances"] == {}
    cancel_paid = peer.post(f"/orders/{_order(peer, user, ('pack_10', 1))['id']}/cancel", {})
    assert cancel_paid.status == 200  # a pending one cancels fine


# -- referrals -------------------------------------------------------------------------------------


def test_referrals_by_ids_and_stats(peer: Peer) -> None:
    boss, one, two = new_user("boss"), new_user("one"), new_user("two")
    made = peer.ok("POST", "/referrals", {"referrer_id": boss.pk, "referee_id": one.pk,
                                          "metadata": {"via": "link"}})
    assert made["success"] is True and made["message"] == "Referral assigned"
    assert made["data"]["created"] is True and made["data"]["referral_id"]
    assert made["data"]["metadata"]["via"] == "link"
    repeat = peer.ok("POST", "/referrals", {"referrer_id": boss.pk, "referee_id": one.pk})
    assert repeat["data"]["created"] is False
    assert repeat["data"]["referral_id"] == made["data"]["referral_id"]
    peer.ok("POST", "/referrals", {"referrer_id": boss.pk, "referee_id": two.pk})
    stats = peer.ok("GET", "/referrals/stats", {"user_id": boss.pk})
    assert stats == {"success": True, "message": "Stats retrieved", "data": {"count": 2}}
    unknown = peer.get("/referrals/stats", {"user_id": 987654321})
    assert_refused(unknown, 400)
    assert unknown.body["message"] == "user_id is required"


def test_referrals_by_existing_identities(peer: Peer) -> None:
    boss = peer.ok("POST", "/identify", {"provider": "telegram", "external_id": "r-boss"})
    peer.ok("POST", "/identify", {"provider": "telegram", "external_id": "r-kid"})
    made = peer.ok("POST", "/referrals", {"provider": "telegram",
                                          "referrer_external_id": "r-boss",
                                          "referee_external_id": "r-kid"})
    assert made["data"]["created"] is True
    stats = peer.ok("GET", "/referrals/stats", {"provider": "telegram",
                                                "external_id": "r-boss"})
    assert stats["data"]["count"] == 1
    assert peer.ok("GET", "/referrals/stats", {"user_id": boss["user_id"]})["data"] == {
        "count": 1}


# -- POST /customers/merge --------------------------------------------------------------------


def test_merge_moves_everything_and_reports_counts(peer: Peer, shop: Shop) -> None:
    target = new_user("target")
    source = peer.ok("POST", "/identify", {"provider": "telegram", "external_id": "dup"})
    source_user = User.objects.get(pk=source["user_id"])
    give(source_user, shop.pack)
    _order(peer, source_user, ("pack_10", 1))
    answer = peer.ok("POST", "/customers/merge", {"target_user_id": target.pk,
                                                  "source_user_id": source_user.pk})
    assert answer["success"] is True
    assert answer["message"] == (f"Successfully merged customer {source_user.pk} "
                                 f"into {target.pk}")
    assert answer["moved_orders"] == 1 and answer["moved_batches"] == 1
    assert answer["moved_transactions"] == 1 and answer["moved_identities"] == 1
    assert answer["moved_referrals"] == 0
    assert peer.ok("GET", "/wallet", {"provider": "telegram", "external_id": "dup"}) == {
        "user_id": target.pk, "balances": {"TOKENS": 10}}


def test_merge_refusals(peer: Peer) -> None:
    user = new_user("lonely")
    cases = [
        ({"target_user_id": user.pk, "source_user_id": user.pk},
         "Target and source users must be different."),
        ({"target_user_id": 987654321, "source_user_id": user.pk},
         "Target user 987654321 does not exist."),
        ({"target_user_id": user.pk, "source_user_id": 987654321},
         "Source user 987654321 does not exist."),
    ]
    for body, message in cases:
        answer = peer.post("/customers/merge", body)
        assert_refused(answer, 400)
        assert answer.body["message"] == message
    a = peer.ok("POST", "/identify", {"provider": "telegram", "external_id": "c-a"})
    b = peer.ok("POST", "/identify", {"provider": "telegram", "external_id": "c-b"})
    clash = peer.post("/customers/merge", {"target_user_id": a["user_id"],
                                           "source_user_id": b["user_id"]})
    assert_refused(clash, 400)
    assert clash.body["message"] == ("Identity conflict: both users have different "
                                     "external_ids for provider telegram.")
    assert_refused(peer.post("/customers/merge", {"target_user_id": user.pk}), 422)


# -- further contract points ----------------------------------------------------------------------


@pytest.mark.parametrize(("route", "body"), [
    ("/wallet/consume", {"product_key": "tokens"}),
    ("/exchange", {"sku": "tokens_for_gems"}),
    ("/orders", {"items": [{"sku": "pack_10"}]}),
    ("/demo/trial-grant", {"sku": "trial_free"}),
])
def test_every_post_answers_404_for_an_unknown_user_id(peer: Peer, shop: Shop, route: str,
                                                       body: dict[str, Any]) -> None:
    """docs/api.md: an unknown ``user_id`` is ``404 User not found`` on every POST (no
    account is created from a bare id) — also where 0.2 answered 400 for an unknown offer."""
    users = User.objects.count()
    answer = peer.post(route, {**body, "user_id": 987654321})
    assert_refused(answer, 404)
    assert (answer.body["message"], answer.body["data"]["error"]) == ("User not found",
                                                                     "user_not_found")
    assert User.objects.count() == users


def test_post_user_id_wins_even_when_it_is_unknown(peer: Peer, shop: Shop) -> None:
    known = peer.ok("POST", "/identify", {"provider": "telegram", "external_id": "k-1"})
    answer = peer.post("/orders", {"user_id": 987654321, "provider": "telegram",
                                   "external_id": "k-1", "items": [{"sku": "pack_10"}]})
    assert_refused(answer, 404)
    assert answer.body["message"] == "User not found"
    other = new_user("explicit")
    order = peer.ok("POST", "/orders", {"user_id": other.pk, "provider": "telegram",
                                        "external_id": "brand-new", "items": [{"sku": "pack_10"}]})
    assert order["user_id"] == other.pk != known["user_id"]
    assert _identity_count() == 1  # "brand-new" was not created


def test_trial_without_identities_records_the_users_own(peer: Peer, shop: Shop) -> None:
    owner = peer.ok("POST", "/identify", {"provider": "telegram", "external_id": "own-1"})
    peer.ok("POST", "/demo/trial-grant", {"user_id": owner["user_id"], "sku": "trial_free"})
    stranger = new_user("stranger")
    answer = peer.post("/demo/trial-grant", {"user_id": stranger.pk, "sku": "trial_free",
                                             "identities": {"telegram": "own-1"}})
    assert_refused(answer, 400)
    assert answer.body["data"]["error"] == "trial_already_used"
    assert peer.ok("POST", "/identify", {"provider": "telegram",
                                         "external_id": "own-1"})["trial_eligible"] is False


def test_exchange_currency_messages(peer: Peer, shop: Shop) -> None:
    from billable.models import Offer, OfferItem

    user = new_user("cur")
    give(user, shop.gem_pack)
    usd = peer.post("/exchange", {"user_id": user.pk, "sku": "pack_10"})
    assert_refused(usd, 400)
    assert usd.body["message"] == "Currency product 'USD' not found."
    odd = Offer.objects.create(sku="PAID_IN_TOKENS", name="x", price=Decimal("1"),
                               currency="TOKENS")
    OfferItem.objects.create(offer=odd, product=shop.premium, quantity=1)
    not_currency = peer.post("/exchange", {"user_id": user.pk, "sku": "paid_in_tokens"})
    assert_refused(not_currency, 400)
    assert not_currency.body["message"] == (
        "Product 'TOKENS' is not marked as a currency for exchange.")
    half = Offer.objects.create(sku="HALF_GEM", name="y", price=Decimal("2.50"), currency="GEMS")
    OfferItem.objects.create(offer=half, product=shop.tokens, quantity=1)
    assert_refused(peer.post("/exchange", {"user_id": user.pk, "sku": "half_gem"}), 400)
    short = Offer.objects.create(sku="PRICEY", name="z", price=Decimal("500"), currency="GEMS")
    OfferItem.objects.create(offer=short, product=shop.tokens, quantity=1)
    broke = peer.post("/exchange", {"user_id": user.pk, "sku": "pricey"})
    assert_refused(broke, 400)
    assert broke.body["message"] == "Insufficient balance"
    assert peer.ok("GET", "/wallet", {"user_id": user.pk})["balances"] == {"GEMS": 100}


def test_free_offers_serialise_prices_as_decimal_strings(peer: Peer, shop: Shop) -> None:
    trial = peer.ok("GET", "/catalog/trial_free")
    assert trial["price"] == "0.00"
    assert peer.ok("GET", "/catalog/tokens_for_gems")["price"] == "30.00"


def test_wrong_methods_are_405_with_allow(peer: Peer) -> None:
    """Django Ninja's own answer (documented in docs/api.md): 405, ``Allow``, a plain text
    body; the method is checked before the token."""
    for method, route in (("get", "/identify"), ("put", "/orders/1"), ("delete", "/catalog"),
                          ("get", "/wallet/consume"), ("post", "/catalog")):
        response = getattr(peer.client, method)("/api/v1/billing" + route, headers=peer.headers)
        assert response.status_code == 405, (method, route)
        assert response.headers["Allow"]
        assert b"Traceback" not in response.content


def test_order_commands_accept_a_bare_post_without_a_body(peer: Peer, shop: Shop) -> None:
    """The README's ``POST /orders/{order_id}/confirm`` is written without a body; every body
    field of confirm / cancel / refund is optional, so the body itself is too."""
    user = new_user("bare")
    paid, dropped = _order(peer, user, ("pack_10", 1)), _order(peer, user, ("pack_10", 1))
    for route, status in ((f"/orders/{paid['id']}/confirm", "paid"),
                          (f"/orders/{paid['id']}/refund", "refunded"),
                          (f"/orders/{dropped['id']}/cancel", "cancelled")):
        for raw, content_type in ((b"", "application/json"), (b"null", "application/json")):
            answer = peer.post(route, raw=raw, content_type=content_type)
            if answer.status == 200:
                break
        assert answer.status == 200, (route, answer.text)
        assert answer.body["data"]["status"] == status
    response = peer.client.generic("POST", f"/api/v1/billing/orders/{dropped['id']}/cancel",
                                   headers=peer.headers)  # no body, no content type
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(("method", "route", "target"), [
    ("POST", "/orders/{order}/confirm", "billable.api.orders.OrderService.apay_order"),
    ("GET", "/catalog", "billable.api.catalog.active_offers"),
    ("GET", "/products", "billable.api.catalog.ProductService.aget_active_products"),
])
def test_a_bug_is_a_500_envelope_without_details(peer: Peer, shop: Shop,
                                                 monkeypatch: pytest.MonkeyPatch, method: str,
                                                 route: str, target: str) -> None:
    """docs/api.md: anything but a billable error is ``500`` with the ``internal_error``
    envelope; the exception's text never reaches the client (no traceback, no HTML page)."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret /srv/app/settings.py")

    order = _order(peer, new_user("bug"), ("pack_10", 1))
    monkeypatch.setattr(target, broken)
    path = route.format(order=order["id"])
    answer = peer.get(path) if method == "GET" else peer.post(path, {})
    assert answer.status == 500, answer.text
    assert answer.body == {"success": False, "message": "Internal error",
                           "data": {"error": "internal_error"}}
    assert "secret" not in answer.text
