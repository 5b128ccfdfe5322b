"""Peer suite, written from the contract: trials, exchange, orders, referrals and merges (SPEC §6).

Black box: requests go through Django's test client on ``/api/v1/billing/`` (mounted with
``include("billable.urls")``); data is set up through the public models and services.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model

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
    assert identity_count() == 1  # "brand-new" was not created


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
