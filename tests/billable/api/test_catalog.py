"""Catalog endpoints: /products, /products/{key}, /catalog, /catalog/{sku}."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.billable.api.conftest import in_main_thread

pytestmark = pytest.mark.django_db


@in_main_thread
async def test_products_lists_active_products_only(api: Any, tokens: Any,
                                                   make_product: Any) -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(make_product)("OLD", is_active=False)
    reply = await api.get("/products")
    assert reply.status_code == 200
    keys = [p["product_key"] for p in reply.json()]
    assert keys == ["TOKENS"]
    assert reply.json()[0]["name"] == "AI Tokens"


@in_main_thread
async def test_product_by_key_is_case_insensitive(api: Any, tokens: Any) -> None:
    reply = await api.get("/products/tokens")
    assert reply.status_code == 200
    assert reply.json()["product_key"] == "TOKENS"


@in_main_thread
async def test_unknown_product_is_404(api: Any) -> None:
    reply = await api.get("/products/NON_EXISTENT")
    assert reply.status_code == 404
    assert reply.json()["success"] is False
    assert reply.json()["message"] == "Product not found"
    assert reply.json()["data"]["error"] == "product_not_found"


@in_main_thread
async def test_catalog_lists_offers_with_items_and_string_prices(api: Any, bundle: Any) -> None:
    reply = await api.get("/catalog")
    assert reply.status_code == 200
    [offer] = reply.json()
    assert offer["sku"] == "PACK_STARTER"
    assert offer["price"] == "20.00"
    assert [(i["product"]["product_key"], i["quantity"], i["period_unit"], i["period_value"])
            for i in offer["items"]] == [("TOKENS", 100, "forever", None),
                                         ("PREMIUM", 1, "days", 30)]


@in_main_thread
async def test_catalog_filter_keeps_requested_order_and_skips_missing(
        api: Any, bundle: Any, credit_pack: Any) -> None:
    reply = await api.get("/catalog", sku=["off_credits_100", "off_missing", "PACK_starter"])
    assert reply.status_code == 200
    assert [o["sku"] for o in reply.json()] == ["OFF_CREDITS_100", "PACK_STARTER"]
    reply = await api.get("/catalog", sku=["x", "y"])
    assert reply.json() == []


@in_main_thread
async def test_catalog_hides_inactive_offers(api: Any, bundle: Any, credit_pack: Any) -> None:
    from billable.models import Offer

    await Offer.objects.filter(pk=credit_pack.pk).aupdate(is_active=False)
    assert [o["sku"] for o in (await api.get("/catalog")).json()] == ["PACK_STARTER"]
    reply = await api.get("/catalog", sku=["OFF_CREDITS_100", "PACK_STARTER"])
    assert [o["sku"] for o in reply.json()] == ["PACK_STARTER"]
    missing = await api.get("/catalog/off_credits_100")
    assert missing.status_code == 404
    assert missing.json()["message"] == "Offer not found"


@in_main_thread
async def test_catalog_offer_by_sku(api: Any, bundle: Any) -> None:
    reply = await api.get("/catalog/pack_STARTER")
    assert reply.status_code == 200
    assert reply.json()["name"] == "Starter Bundle"
    assert len(reply.json()["items"]) == 2
    unknown = await api.get("/catalog/nonexistent_sku_xyz")
    assert unknown.status_code == 404
    assert unknown.json()["success"] is False


def _catalog_queries(client: Any, auth: dict[str, str]) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get("/api/v1/billing/catalog", headers=auth)
    assert response.status_code == 200
    return len(ctx.captured_queries), len(response.json())


def test_catalog_query_count_is_constant(client: Any, make_offer: Any, make_product: Any,
                                         settings: Any) -> None:
    auth = {"Authorization": f"Bearer {settings.BILLABLE_API_TOKEN}"}
    product = make_product("GEMS")
    make_offer("ONE", items=[(product, 1)])
    small, count = _catalog_queries(client, auth)
    assert count == 1
    for index in range(15):
        extra = make_product(f"EXTRA_{index}")
        make_offer(f"MANY_{index}", items=[(product, 1), (extra, 2), (extra, 3, "days", 7)])
    large, count = _catalog_queries(client, auth)
    assert count == 16
    assert small == large <= 3
