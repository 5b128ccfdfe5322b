"""ProductService: active products, case-insensitive lookups, trial products."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from billable.exceptions import InvalidProductKey
from billable.services import ProductService

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(make_product):
    make_product("ZETA", name="Zeta")
    make_product("ALPHA", name="Alpha")
    make_product("OLD", name="Old", is_active=False)
    make_product("TRIAL_PACK", name="Welcome Trial")
    make_product("FLAGGED", name="Flagged", metadata={"is_trial": True})


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_active_products_by_name(catalog, mode):
    if mode == "sync":
        products = ProductService.get_active_products()
    else:
        products = async_to_sync(ProductService.aget_active_products)()
    assert [p.name for p in products] == ["Alpha", "Flagged", "Welcome Trial", "Zeta"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_product_by_key_in_any_case(catalog, mode):
    get = (ProductService.get_product_by_key if mode == "sync"
           else async_to_sync(ProductService.aget_product_by_key))
    assert get("alpha").product_key == "ALPHA"
    assert get("TeSt_nothing") is None
    assert get("old") is None  # inactive


@pytest.mark.parametrize("key", ["", "  ", None])
def test_product_by_blank_key_is_refused(key):
    with pytest.raises(InvalidProductKey):
        ProductService.get_product_by_key(key)


def test_trial_products(catalog):
    assert [p.product_key for p in ProductService.get_trial_products()] == ["FLAGGED",
                                                                         "TRIAL_PACK"]
