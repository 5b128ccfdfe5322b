"""Peer suite, written from the contract: auth, API keys, mounting and the OpenAPI docs.

SPEC §1 (``billable.api.router``, ``billable.urls``), §2 (``BILLABLE_API_TOKEN``,
``BILLABLE_SHOW_DOCS``, ``BILLABLE_API_TITLE``), §6 (auth, docs) and §10 (API keys).
"""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import include, path, reverse

from billable.urls import api
from tests.billable.api.peer_support import (
    Peer,
    assert_refused,
    build_shop,
    new_user,
    router_call,
    token,
)

pytestmark = pytest.mark.django_db

#: ``ROOT_URLCONF`` of the tests that mount the API through ``api.urls`` (this module).
urlpatterns = [
    path("api/v1/billing/", api.urls),
    path("elsewhere/billing/", include("billable.urls")),
]

#: Every endpoint of SPEC §6, with a request that would be valid for some user.
ENDPOINTS = [
    ("POST", "/identify", {"external_id": "42"}),
    ("GET", "/products", None),
    ("GET", "/products/TOKENS", None),
    ("GET", "/balance", {"product_key": "TOKENS", "user_id": 1}),
    ("GET", "/user-products", {"user_id": 1}),
    ("GET", "/wallet", {"user_id": 1}),
    ("GET", "/wallet/batches", {"user_id": 1}),
    ("GET", "/wallet/transactions", {"user_id": 1}),
    ("POST", "/wallet/consume", {"user_id": 1, "product_key": "TOKENS"}),
    ("POST", "/demo/trial-grant", {"user_id": 1, "sku": "TRIAL_FREE"}),
    ("POST", "/exchange", {"user_id": 1, "sku": "TOKENS_FOR_GEMS"}),
    ("POST", "/orders", {"user_id": 1, "items": [{"sku": "PACK_10", "quantity": 1}]}),
    ("GET", "/orders/1", None),
    ("POST", "/orders/1/confirm", {"payment_id": "p-1"}),
    ("POST", "/orders/1/cancel", {}),
    ("POST", "/orders/1/refund", {}),
    ("POST", "/referrals", {"referrer_id": 1, "referee_id": 2}),
    ("GET", "/referrals/stats", {"user_id": 1}),
    ("POST", "/customers/merge", {"target_user_id": 1, "source_user_id": 2}),
    ("GET", "/catalog", None),
    ("GET", "/catalog/PACK_10", None),
]
ENDPOINT_IDS = [f"{method} {route}" for method, route, _ in ENDPOINTS]


def _call(peer: Peer, method: str, route: str, payload: object) -> object:
    return peer.get(route, payload) if method == "GET" else peer.post(route, payload)


# -- 401 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "route", "payload"), ENDPOINTS, ids=ENDPOINT_IDS)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", f"Token {'x'}", "Bearer",
                                  "Basic dXNlcjpwYXNz", ""])
def test_every_endpoint_refuses_a_missing_or_wrong_token(method: str, route: str,
                                                         payload: object,
                                                         auth: str | None) -> None:
    answer = _call(Peer(auth), method, route, payload)
    assert answer.status == 401, answer.text  # type: ignore[attr-defined]
    assert answer.body == {"detail": "Unauthorized"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(("method", "route", "payload"), ENDPOINTS, ids=ENDPOINT_IDS)
def test_the_right_token_under_another_scheme_is_refused(method: str, route: str,
                                                         payload: object) -> None:
    answer = _call(Peer(f"Token {token()}"), method, route, payload)
    assert (answer.status, answer.body) == (401, {"detail": "Unauthorized"})  # type: ignore[attr-defined]


@pytest.mark.parametrize("setting", ["", None])
@pytest.mark.parametrize("auth", ["Bearer ", "Bearer", "Bearer None", "Bearer \"\"", None])
def test_an_unset_or_empty_token_refuses_everything(setting: str | None,
                                                    auth: str | None) -> None:
    with override_settings(BILLABLE_API_TOKEN=setting):
        for method, route, payload in ENDPOINTS:
            answer = _call(Peer(auth), method, route, payload)
            assert answer.status == 401, (route, answer.text)  # type: ignore[attr-defined]
            assert answer.body == {"detail": "Unauthorized"}  # type: ignore[attr-defined]


def test_unauthenticated_garbage_is_401_before_any_parsing() -> None:
    for body in (b"{not json", b"[]", b"\xff\xfe", b""):
        answer = Peer(None).post("/wallet/consume", raw=body)
        assert (answer.status, answer.body) == (401, {"detail": "Unauthorized"}), body


def test_a_token_prefix_or_extension_is_not_the_token() -> None:
    for wrong in (token()[:-1], token() + "x", token().upper(), f"{token()} {token()}"):
        answer = Peer(f"Bearer {wrong}").get("/catalog")
        assert answer.status == 401, wrong


# -- API keys (SPEC §10) -----------------------------------------------------------------------


def test_a_named_key_with_scopes_works_only_within_them() -> None:
    from billable.services.api_keys import create_api_key

    build_shop()
    user = new_user("scoped")
    key, secret = create_api_key("storefront", ["catalog:read"])
    assert key.name == "storefront"
    peer = Peer(f"Bearer {secret}")
    assert peer.get("/catalog").status == 200
    assert peer.get("/catalog/pack_10").status == 200
    refused = peer.post("/wallet/consume", {"user_id": user.pk, "product_key": "TOKENS"})
    assert_refused(refused, 403)
    assert refused.body["success"] is False
    assert refused.body["data"]["error"] == "insufficient_scope"
    assert peer.get("/wallet", {"user_id": user.pk}).status == 403


def test_the_settings_token_is_a_full_scope_key() -> None:
    peer = Peer()
    first, second = new_user("merge-a"), new_user("merge-b")
    answer = peer.post("/customers/merge",
                       {"target_user_id": first.pk, "source_user_id": second.pk})
    assert answer.status == 200, answer.text
    assert peer.post("/orders/999999/refund", {}).status == 404  # authorized, just unknown


def test_the_settings_token_still_works_next_to_stored_keys() -> None:
    from billable.services.api_keys import create_api_key

    create_api_key("other", ["catalog:read"])
    assert Peer().get("/products").status == 200


# -- mounting (SPEC §1) -------------------------------------------------------------------------


@override_settings(ROOT_URLCONF=__name__)
def test_api_urls_serves_the_api_too() -> None:
    build_shop()
    for mount in ("/api/v1/billing", "/elsewhere/billing"):
        answer = Peer(mount=mount).get("/catalog/pack_10")
        assert answer.status == 200, (mount, answer.text)
        assert answer.body["sku"] == "PACK_10"
        assert Peer(None, mount=mount).get("/catalog").status == 401
    assert reverse("billable_default_api:list_catalog").endswith("/catalog")


def test_the_router_alone_works_with_router_relative_paths() -> None:
    build_shop()
    answer = router_call("GET", "/catalog")
    assert answer.status == 200
    assert "PACK_10" in {offer["sku"] for offer in answer.body}
    user = new_user("router-user")
    consumed = router_call("POST", "/wallet/consume",
                           json_body={"user_id": user.pk, "product_key": "tokens"})
    assert consumed.status == 400
    assert consumed.body["message"] == "No active quota for TOKENS"


# -- OpenAPI docs --------------------------------------------------------------------------------


def test_openapi_needs_the_token_and_lists_every_endpoint() -> None:
    assert Peer(None).get("/openapi.json").status == 401
    assert Peer("Bearer wrong").get("/openapi.json").status == 401
    answer = Peer().get("/openapi.json")
    assert answer.status == 200
    assert answer.body["info"]["title"] == "Billable Engine API"
    paths = set(answer.body["paths"])
    for _method, route, _ in ENDPOINTS:
        template = (route.replace("/orders/1", "/orders/{order_id}")
                    .replace("/products/TOKENS", "/products/{product_key}")
                    .replace("/catalog/PACK_10", "/catalog/{sku}"))
        assert "/api/v1/billing" + template in paths, template


def test_blanks_around_the_token_are_ignored() -> None:
    assert Peer(f"  Bearer   {token()}  ").get("/products").status == 200


def test_key_shaped_strangers_are_401() -> None:
    for stranger in ("bk_" + "a" * 43, "bk_", "bk_" + "a" * 500):
        answer = Peer(f"Bearer {stranger}").get("/products")
        assert (answer.status, answer.body) == (401, {"detail": "Unauthorized"})


def test_the_scope_is_checked_before_the_body_is_read() -> None:
    from billable.services.api_keys import create_api_key

    _, secret = create_api_key("reader", ["catalog:read"])
    answer = Peer(f"Bearer {secret}").post("/wallet/consume", raw=b"{oops")
    assert_refused(answer, 403)
    assert answer.body["data"]["required_scope"] == "wallet:consume"
