"""Peer acceptance suite (black box) over HTTP: the growth endpoints, API keys and metrics.

Written from docs/growth.md, docs/api-keys.md, docs/metrics.md and SPEC §6 only: every refusal
is a 4xx JSON answer with its documented code, never a 500; keys are hashed at rest, scoped and
revoked at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from importlib.util import find_spec
from io import StringIO
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from billable.exceptions import UnknownScope
from billable.models import ApiKey, Order, PromoRedemption, QuotaBatch, Transaction
from billable.services import OrderService, TransactionService
from billable.services.api_keys import create_api_key
from tests.billable.api.peer_support import Answer, Peer

pytestmark = pytest.mark.django_db

Shop = dict[str, Any]


def keyed(*scopes: str) -> Peer:
    _, token = create_api_key(f"peer2 {' '.join(scopes)}", list(scopes))
    return Peer(f"Bearer {token}")


def refused(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, (answer.status, answer.text)
    assert answer.body["success"] is False
    assert answer.body["data"]["error"] == code


# --- promo over REST ---------------------------------------------------------------------------


def test_redeem_grant_code_by_identity_then_replay_is_409(shop: Shop,
                                                         make_code: Callable[..., Any]) -> None:
    make_code("API-WELCOME", offer=shop["free"])
    peer = Peer()
    body = {"provider": "telegram", "external_id": "777", "code": "api-welcome"}
    first = peer.post("/promo/redeem", body)
    assert first.status == 200, first.text
    assert first.body["data"]["status"] == "redeemed"
    refused(peer.post("/promo/redeem", body), 409, "promo_already_used")
    assert Transaction.objects.count() == 1


@pytest.mark.parametrize("fields, status, code", [
    ({"is_active": False}, 409, "promo_expired"),
    ({"max_uses": 1, "uses_count": 1}, 409, "promo_exhausted"),
    ({"first_time_only": True}, 409, "promo_not_first_time"),
    ({"kind": "percent", "percent_off": 10, "offer": None}, 400, "promo_not_applicable"),
])
def test_redeem_refusals_have_their_documented_status(shop: Shop, make_code: Callable[..., Any],
                                                      user: Any, fields: dict[str, Any],
                                                      status: int, code: str) -> None:
    fields.setdefault("offer", shop["free"])
    make_code("REFUSED", **fields)
    if code == "promo_not_first_time":
        order = OrderService.create_order(user.pk, [{"sku": "USD_PACK", "quantity": 1}])
        OrderService.process_payment(order.id, payment_id="first", payment_method="card")
    rows = Transaction.objects.count()
    refused(Peer().post("/promo/redeem", {"user_id": user.pk, "code": "refused"}), status, code)
    refused(Peer().get("/promo/quote", {"code": "refused", "user_id": user.pk}), status, code)
    assert Transaction.objects.count() == rows
    assert PromoRedemption.objects.count() == 0


def test_unknown_code_is_404(shop: Shop, user: Any) -> None:
    refused(Peer().post("/promo/redeem", {"user_id": user.pk, "code": "NOPE"}), 404,
            "promo_unknown")
    refused(Peer().get("/promo/quote", {"code": "NOPE"}), 404, "promo_unknown")


def test_discount_redeem_returns_a_pending_order_that_confirm_pays(
        shop: Shop, make_code: Callable[..., Any], user: Any,
        django_capture_on_commit_callbacks: Any) -> None:
    make_code("HALF", kind="percent", percent_off=50, offer=shop["usd"])
    quote = Peer().ok("GET", "/promo/quote", {"code": "half", "user_id": user.pk})
    assert PromoRedemption.objects.count() == 0
    assert json.dumps(quote).count("4.99") + json.dumps(quote).count("5.00") >= 1, quote
    reply = Peer().ok("POST", "/promo/redeem", {"user_id": user.pk, "code": "HALF"})
    order = reply["data"]["order"]
    assert order["status"] == "pending" and order["total_amount"] in {"5.00", "4.99"}
    assert TransactionService.get_balance(user.pk, "credits") == 0
    with django_capture_on_commit_callbacks(execute=True):
        Peer().ok("POST", f"/orders/{order['id']}/confirm", {"payment_id": "pay-half"})
    assert TransactionService.get_balance(user.pk, "credits") == 100
    assert PromoRedemption.objects.get().status == "redeemed"


@pytest.mark.parametrize("body", [
    {"code": 123}, {"code": None}, {"code": ["HELLO"]}, {},
    {"code": "HELLO", "user_id": "abc"}, {"code": "HELLO", "user_id": 10**30},
    {"code": "HEL\u0000LO"}, {"code": "x" * 100_000},
    {"code": "HELLO", "sku": "A\u0000"},
    {"code": "HELLO", "identities": "telegram"}, {"code": "HELLO", "identities": {"t\u0000": 1}},
    {"code": "HELLO", "metadata": {"k": "\u0000"}}, {"code": "HELLO", "metadata": [1]},
    {"code": "HELLO", "external_id": "x\u0000", "provider": "telegram", "user_id": None},
])
def test_hostile_redeem_bodies_get_a_4xx_json_answer(shop: Shop, make_code: Callable[..., Any],
                                                     user: Any, body: dict[str, Any]) -> None:
    make_code("HELLO", offer=shop["free"])
    body = {"user_id": user.pk, **body}
    if body.get("user_id") is None:
        body.pop("user_id")
    answer = Peer().post("/promo/redeem", body)
    assert 400 <= answer.status < 500, (answer.status, answer.text)
    assert isinstance(answer.body, dict), answer.text
    assert QuotaBatch.objects.count() == 0
    assert TransactionService.check_ledger() == []


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"\xff\xfe", b"null"])
def test_unparseable_redeem_body_is_4xx(shop: Shop, make_code: Callable[..., Any],
                                        raw: bytes) -> None:
    make_code("HELLO", offer=shop["free"])
    answer = Peer().post("/promo/redeem", raw=raw)
    assert 400 <= answer.status < 500, (answer.status, answer.text)
    assert QuotaBatch.objects.count() == 0


@pytest.mark.parametrize("params", [{"code": "HELLO", "user_id": "x"},
                                    {"code": "HELLO", "sku": "NOPE"},
                                    {"code": "HELLO", "user_id": 10**30}, {},
                                    {"code": "HELLO", "user_id": 999_999}])
def test_hostile_quote_queries_are_4xx(shop: Shop, make_code: Callable[..., Any],
                                       params: dict[str, Any]) -> None:
    make_code("HELLO", kind="percent", percent_off=10)
    answer = Peer().get("/promo/quote", params)
    assert 400 <= answer.status < 500, (answer.status, answer.text)
    assert PromoRedemption.objects.count() == 0 and Order.objects.count() == 0


# --- gifts over REST ---------------------------------------------------------------------------


def test_gift_read_and_claim_over_rest(shop: Shop, make_user: Callable[..., Any],
                                       paid_gift: Callable[..., Any]) -> None:
    buyer = make_user(username="gift-buyer")
    gift = paid_gift(buyer)
    shown = Peer().ok("GET", f"/gifts/{gift.token}")
    text = json.dumps(shown)
    assert "PACK_10" in text and "ready" in text
    assert "gift-buyer" not in text and "buyer" not in text
    refused(Peer().post(f"/gifts/{gift.token}/claim", {"user_id": buyer.pk}), 409, "gift_own")
    claimer = {"provider": "telegram", "external_id": "4242"}
    assert Peer().post(f"/gifts/{gift.token}/claim", claimer).status == 200
    refused(Peer().post(f"/gifts/{gift.token}/claim", claimer), 409, "gift_already_claimed")
    refused(Peer().post(f"/gifts/{gift.token}/claim", {"user_id": make_user().pk}), 409,
            "gift_already_claimed")
    assert QuotaBatch.objects.count() == 1


@pytest.mark.parametrize("token", ["nope", "%F0%9F%92%A9", "a.b", "x" * 50])
def test_unknown_gift_token_is_404_json(shop: Shop, make_user: Callable[..., Any],
                                        token: str) -> None:
    refused(Peer().get(f"/gifts/{token}"), 404, "gift_unknown")
    refused(Peer().post(f"/gifts/{token}/claim", {"user_id": make_user().pk}), 404,
            "gift_unknown")


@pytest.mark.parametrize("token", ["x" * 3000, "%00", "a%00b"])
def test_gift_token_the_schema_refuses_is_422_json(shop: Shop, make_user: Callable[..., Any],
                                                   token: str) -> None:
    """docs/api.md: every path string has a maxLength and no NUL, refused with 422."""
    for answer in (Peer().get(f"/gifts/{token}"),
                   Peer().post(f"/gifts/{token}/claim", {"user_id": make_user().pk})):
        assert answer.status == 422, (answer.status, answer.text)
        assert isinstance(answer.body, dict)


@pytest.mark.parametrize("body", [{}, {"user_id": "abc"}, {"user_id": 10**30},
                                  {"user_id": [1]}, {"external_id": ""}])
def test_hostile_gift_claim_bodies_are_4xx(shop: Shop, make_user: Callable[..., Any],
                                           paid_gift: Callable[..., Any],
                                           body: dict[str, Any]) -> None:
    gift = paid_gift(make_user())
    answer = Peer().post(f"/gifts/{gift.token}/claim", body)
    assert 400 <= answer.status < 500, (answer.status, answer.text)
    assert QuotaBatch.objects.count() == 0


# --- scopes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path, scope", [
    ("POST", "/promo/redeem", "promo:redeem"),
    ("GET", "/promo/quote", "promo:read"),
    ("GET", "/gifts/tok", "gifts:read"),
    ("POST", "/gifts/tok/claim", "gifts:claim"),
    ("POST", "/orders/1/refund", "orders:refund"),
    ("POST", "/wallet/consume", "wallet:consume"),
])
def test_key_without_the_scope_is_403_before_the_body_is_read(method: str, path: str,
                                                             scope: str) -> None:
    others = [s for s in ("promo:read", "promo:redeem", "gifts:read", "gifts:claim",
                          "catalog:read") if s != scope]
    peer = keyed(*others)
    answer = (peer.get(path, {"code": 1}) if method == "GET"
              else peer.post(path, raw=b"{broken json"))
    refused(answer, 403, "insufficient_scope")
    assert answer.body["data"]["required_scope"] == scope


def test_key_with_the_scope_gets_through(shop: Shop, make_code: Callable[..., Any],
                                         user: Any) -> None:
    make_code("SCOPED", offer=shop["free"])
    answer = keyed("promo:redeem").post("/promo/redeem", {"user_id": user.pk, "code": "SCOPED"})
    assert answer.status == 200, answer.text
    quote = keyed("promo:read").get("/promo/quote", {"code": "SCOPED", "user_id": user.pk})
    refused(quote, 409, "promo_already_used")


# --- API keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scopes", [["catalog:reed"], ["catalog:*"], [""], [None], "catalog:read",
                                    [["catalog:read"]]])
def test_unknown_scope_is_refused_at_creation(scopes: Any) -> None:
    with pytest.raises(UnknownScope) as caught:
        create_api_key("typo", scopes)
    assert caught.value.code == "unknown_scope"
    assert ApiKey.objects.count() == 0


@pytest.mark.parametrize("header", [
    "", "Bearer", "Basic dXNlcjpwYXNz", "bk_" + "A" * 43, "Bearer bk_" + "A" * 43,
    "Bearer bk_" + "é" * 43, "Bearer " + "b" * 20_000, "Bearer bk_\u0000",
    "Bearer test-token-0123456789abcdeX", "Bearer test-token-0123456789abcdef extra",
])
def test_garbled_authorization_headers_are_401_json(header: str) -> None:
    client = Client(raise_request_exception=False)
    response = client.get("/api/v1/billing/catalog", headers={"Authorization": header})
    assert response.status_code == 401, (header, response.status_code)
    assert response.json() == {"detail": "Unauthorized"}
    post = client.post("/api/v1/billing/wallet/consume", "{}", content_type="application/json",
                       headers={"Authorization": header})
    assert post.status_code == 401
    assert client.get("/api/v1/billing/openapi.json",
                      headers={"Authorization": header}).status_code == 401
    if find_spec("prometheus_client") and header.strip():
        assert scrape(header).status_code == 401


def test_scheme_is_case_insensitive() -> None:
    _, token = create_api_key("case", ["catalog:read"])
    for scheme in ("bearer", "BEARER", "Bearer"):
        assert Peer(f"{scheme} {token}").get("/catalog").status == 200


# --- metrics -------------------------------------------------------------------------------------


def scrape(header: str | None = None) -> Any:
    headers = {"Authorization": header} if header else {}
    return Client(raise_request_exception=False).get("/metrics", headers=headers)


def series(text: str, name: str, **labels: str) -> float:
    """The sample of ``name`` with at least these labels (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_endpoint_needs_the_metrics_scope() -> None:
    pytest.importorskip("prometheus_client")
    assert scrape().status_code == 401
    _, other = create_api_key("no metrics", ["catalog:read"])
    assert scrape(f"Bearer {other}").status_code == 403
    _, reader = create_api_key("prometheus", ["metrics:read"])
    assert scrape(f"Bearer {reader}").status_code == 200
    with override_settings(BILLABLE_METRICS_PUBLIC=True):
        assert scrape().status_code == 200


def test_documented_series_move_after_the_documented_actions(
        shop: Shop, user: Any, django_capture_on_commit_callbacks: Any) -> None:
    pytest.importorskip("prometheus_client")
    _, reader = create_api_key("prometheus", ["metrics:read"])
    auth = f"Bearer {reader}"
    before = scrape(auth).content.decode()
    order = OrderService.create_order(user.pk, [{"sku": "USD_PACK", "quantity": 1}])
    with django_capture_on_commit_callbacks(execute=True):
        OrderService.process_payment(order.id, payment_id="metrics-1", payment_method="card")
    with django_capture_on_commit_callbacks(execute=True):
        TransactionService.consume_quota(user.pk, "CREDITS", amount=3)
    Peer().get("/orders/999999")
    after = scrape(auth).content.decode()

    def moved(name: str, **labels: str) -> float:
        return series(after, name, **labels) - series(before, name, **labels)

    assert moved("billable_payments_total", outcome="confirmed", currency="USD",
                 method="card") == 1
    # a float counter shared by the process: earlier payments leave rounding in the difference
    assert moved("billable_payment_amount_total", outcome="confirmed",
                 currency="USD") == pytest.approx(9.99)
    assert moved("billable_consumes_total", product="CREDITS") == 1
    assert moved("billable_consumed_units_total", product="CREDITS") == 3
    assert moved("billable_api_requests_total", method="GET", route="/orders/{order_id}",
                 status="404") == 1
    assert 'billable_backlog_items{backlog="events"}' in after
    assert 'billable_backlog_oldest_age_seconds{backlog="events"}' in after
    assert "billable_api_request_duration_seconds_bucket" in after


@pytest.mark.parametrize("body", [
    {}, {"referrer_id": "a", "referee_id": "b"}, {"referrer_id": 10**30, "referee_id": 1},
    {"referrer_id": 1, "referee_id": 1}, {"referrer_id": [1], "referee_id": 2},
    {"provider": "telegram", "referrer_external_id": "\u0000", "referee_external_id": "2"},
    {"provider": "telegram", "referrer_external_id": "nobody", "referee_external_id": "none"},
    {"referrer_id": 1, "referee_id": 2, "metadata": {"k": "\u0000"}},
])
def test_hostile_referral_bodies_get_a_4xx_json_answer(make_user: Callable[..., Any],
                                                       body: dict[str, Any]) -> None:
    users = {1: make_user().pk, 2: make_user().pk}
    body = {key: users.get(value, value) if key.endswith("_id") and isinstance(value, int)
            else value for key, value in body.items()}
    answer = Peer().post("/referrals", body)
    assert 400 <= answer.status < 500, (answer.status, answer.text)
    assert isinstance(answer.body, dict)
    from billable.models import Referral

    assert Referral.objects.count() == 0


def test_referral_over_rest_then_stats(make_user: Callable[..., Any]) -> None:
    referrer, referee = make_user(), make_user()
    body = {"referrer_id": referrer.pk, "referee_id": referee.pk}
    first = Peer().ok("POST", "/referrals", body)
    assert first["message"] == "Referral assigned" and first["data"]["created"] is True
    second = Peer().post("/referrals", body)
    assert second.status in {200, 400}, second.text
    stats = Peer().ok("GET", "/referrals/stats", {"user_id": referrer.pk})
    assert stats["data"] == {"count": 1}


def test_refusals_and_jobs_move_their_documented_series(shop: Shop, user: Any) -> None:
    pytest.importorskip("prometheus_client")
    from django.core.management import call_command

    from billable.models import Reservation
    from tests.billable.ledger_support import make_batch

    _, reader = create_api_key("prometheus", ["metrics:read"])
    auth = f"Bearer {reader}"
    before = scrape(auth).content.decode()
    Peer("Bearer nope").get("/catalog")
    keyed("catalog:read").post("/orders/1/refund", {})
    make_batch(user, shop["credits"], 4, age_days=3, expires_in_days=-1)
    TransactionService.grant_offer(user.pk, shop["pack"])
    hold = TransactionService.reserve_quota(user.pk, "CREDITS", amount=2)
    Reservation.objects.filter(pk=hold).update(expires_at=timezone.now() - timedelta(seconds=5))
    call_command("billable_expire", stdout=StringIO())
    after = scrape(auth).content.decode()

    def moved(name: str, **labels: str) -> float:
        return series(after, name, **labels) - series(before, name, **labels)

    assert moved("billable_api_requests_total", route="/catalog", status="401") == 1
    assert moved("billable_api_requests_total", route="/orders/{order_id}/refund",
                 status="403") == 1
    assert moved("billable_batches_expired_total") == 1
    assert moved("billable_holds_expired_total") == 1
    assert TransactionService.get_balance(user.pk, "CREDITS") == 10
    assert TransactionService.check_ledger() == []


def test_gift_past_its_expiry_is_shown_expired_before_the_sweep_runs(
        shop: Shop, make_user: Callable[..., Any], paid_gift: Callable[..., Any]) -> None:
    from billable.models import Gift

    gift = paid_gift(make_user())
    Gift.objects.filter(pk=gift.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    shown = Peer().ok("GET", f"/gifts/{gift.token}")["data"]
    assert (shown["status"], shown["claimable"]) == ("expired", False)
    refused(Peer().post(f"/gifts/{gift.token}/claim", {"user_id": make_user().pk}), 409,
            "gift_expired")


def test_revocation_by_another_process_takes_effect_at_once() -> None:
    """A key revoked elsewhere (here a bare UPDATE: no signal, no cache hook of this process)
    is refused on the next request."""
    key, token = create_api_key("elsewhere", ["catalog:read"])
    peer = Peer(f"Bearer {token}")
    assert peer.get("/catalog").status == 200
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    assert peer.get("/catalog").status == 401
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=None,
                                            expires_at=timezone.now() - timedelta(seconds=1))
    assert peer.get("/catalog").status == 401
