"""Malformed or hostile input never reaches the database and never produces a 5xx."""

from __future__ import annotations

from typing import Any

import pytest

from tests.billable.api.conftest import in_main_thread

pytestmark = pytest.mark.django_db

HUGE = 2**63
POSTS = ["/identify", "/wallet/consume", "/exchange", "/orders", "/orders/1/confirm",
         "/orders/1/cancel", "/orders/1/refund", "/demo/trial-grant", "/referrals",
         "/customers/merge"]


RAW_BODIES = [b"{not json", b"\xff\xfe", b"[" * 5000, b"null", b"[]", b'"x"', b"42",
              b'{"user_id": NaN}']


@pytest.mark.parametrize("path", POSTS)
@in_main_thread
async def test_unparsable_or_non_object_bodies_are_4xx(api: Any, path: str) -> None:
    for raw in RAW_BODIES:
        reply = await api.post(path, raw=raw)
        assert 400 <= reply.status_code < 500, (raw, reply.body)
        if reply.status_code == 400:
            assert reply.json()["success"] is False
            assert reply.json()["data"]["error"] in {"invalid_json", "invalid_input"}


INVALID_CONSUME_BODIES = [
    {"user_id": HUGE, "product_key": "TOKENS"},
    {"user_id": -5, "product_key": "TOKENS"},
    {"user_id": "abc", "product_key": "TOKENS"},
    {"user_id": 1, "product_key": "TOK\x00ENS"},
    {"user_id": 1, "product_key": "K" * 51},
    {"user_id": 1, "product_key": ["TOKENS"]},
    {"user_id": 1, "product_key": "TOKENS", "metadata": {"a": "b\x00"}},
    {"user_id": 1, "product_key": "TOKENS", "metadata": {"k\x00": 1}},
    {"user_id": 1, "product_key": "TOKENS", "metadata": "text"},
    {"user_id": 1, "product_key": "TOKENS", "idempotency_key": "i" * 256},
    {"external_id": "\ud800", "product_key": "TOKENS"},
    {"external_id": "x" * 300, "product_key": "TOKENS"},
]


@in_main_thread
async def test_consume_rejects_invalid_fields_with_422(api: Any, tokens: Any) -> None:
    for payload in INVALID_CONSUME_BODIES:
        reply = await api.post("/wallet/consume", payload)
        assert reply.status_code == 422, payload


@in_main_thread
async def test_deeply_nested_metadata_is_refused(api: Any, user: Any, tokens: Any) -> None:
    nested: dict[str, Any] = {}
    node = nested
    for _ in range(40):
        node["n"] = {}
        node = node["n"]
    reply = await api.post("/wallet/consume", {"user_id": user.pk, "product_key": "TOKENS",
                                               "metadata": nested})
    assert reply.status_code == 422


INVALID_QUERIES = [
    {"user_id": str(HUGE)}, {"user_id": "-1"}, {"user_id": "1e3"},
    {"external_id": "a\x00"}, {"product_key": "\x00"}, {"date_from": "not-a-date"},
    {"date_from": "9999-12-31T23:59:59-23:59"}, {"limit": "0"}, {"limit": "100000"},
]


@in_main_thread
async def test_bad_query_parameters_are_422(api: Any) -> None:
    for query in INVALID_QUERIES:
        reply = await api.get("/wallet/transactions", **query)
        assert reply.status_code == 422, query


@pytest.mark.parametrize("path", ["/products/%00", "/catalog/%00", "/catalog/" + "s" * 60,
                                  "/orders/" + str(HUGE)])
@in_main_thread
async def test_bad_path_parameters_are_422(api: Any, path: str) -> None:
    reply = await api.get(path)
    # Ninja's test client does not percent-decode paths: "%00" is then just an unknown key.
    expected = 404 if api.kind == "router" and "%00" in path else 422
    assert reply.status_code == expected


@in_main_thread
async def test_naive_date_from_is_read_as_utc(api: Any, user: Any) -> None:
    reply = await api.get("/wallet/transactions", user_id=user.pk, date_from="2020-01-01T00:00")
    assert reply.status_code == 200 and reply.json() == []


@in_main_thread
async def test_huge_items_and_quantities(api: Any, user: Any, bundle: Any) -> None:
    many = await api.post("/orders", {"user_id": user.pk,
                                      "items": [{"sku": "PACK_STARTER", "quantity": 1}] * 101})
    assert many.status_code == 422
    big = await api.post("/orders", {"user_id": user.pk,
                                     "items": [{"sku": "PACK_STARTER", "quantity": HUGE}]})
    assert big.status_code == 400
    weird = await api.post("/orders", {"user_id": user.pk,
                                       "items": [{"sku": "PACK\x00", "quantity": 1}]})
    assert weird.status_code == 422
    blank = await api.post("/orders", {"user_id": user.pk, "items": []})
    assert blank.status_code == 400


def test_oversized_body_is_refused_without_5xx(client: Any, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = '{"external_id": "' + "x" * 4096 + '"}'
    response = client.post("/api/v1/billing/identify", body, content_type="application/json",
                           headers={"Authorization": f"Bearer {settings.BILLABLE_API_TOKEN}"})
    assert response.status_code == 413
    assert response.json()["data"]["error"] == "request_too_large"
