"""Shared fixtures: small builders for users, products, offers and grants."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.db import connections

_counter = itertools.count(1)


@pytest.fixture(autouse=True)
def _close_async_worker_connections() -> Iterator[None]:
    """Close the connection asgiref's worker thread opened for ``sync_to_async`` calls.

    Left open, it keeps PostgreSQL from dropping the test database at the end of the run.
    """
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture
def make_user(django_user_model: Any) -> Callable[..., Any]:
    """Builder: ``make_user()`` or ``make_user(username="alice")``."""

    def build(**fields: Any) -> Any:
        fields.setdefault("username", f"user{next(_counter)}")
        return django_user_model.objects.create(**fields)

    return build


@pytest.fixture
def user(make_user: Callable[..., Any]) -> Any:
    return make_user()


@pytest.fixture
def make_product() -> Callable[..., Any]:
    """Builder: ``make_product("CREDITS", product_type="quantity")``."""
    from billable.models import Product

    def build(key: str | None = None, **fields: Any) -> Any:
        fields.setdefault("name", (key or f"Product {next(_counter)}").title())
        fields.setdefault("product_type", Product.ProductType.QUANTITY)
        return Product.objects.create(product_key=key or f"P{next(_counter)}", **fields)

    return build


@pytest.fixture
def make_offer(make_product: Callable[..., Any]) -> Callable[..., Any]:
    """Builder: ``make_offer("PACK_10", items=[(product, 10)], price="9.99")``.

    ``items`` holds ``(product, quantity)`` or ``(product, quantity, period_unit, period_value)``.
    """
    from billable.models import Offer, OfferItem

    def build(sku: str | None = None, *, items: list[tuple[Any, ...]] | None = None,
              price: str | Decimal = "0", currency: str = "USD", **fields: Any) -> Any:
        fields.setdefault("name", f"Offer {next(_counter)}")
        offer = Offer.objects.create(sku=sku or f"OFF_{next(_counter)}", price=Decimal(price),
                                     currency=currency, **fields)
        for item in items or []:
            product, quantity, *period = item
            unit = period[0] if period else OfferItem.PeriodUnit.FOREVER
            value = period[1] if len(period) > 1 else None
            OfferItem.objects.create(offer=offer, product=product, quantity=quantity,
                                     period_unit=unit, period_value=value)
        return offer

    return build
