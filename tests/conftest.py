"""Shared fixtures: small builders for users, products, offers and grants."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.db import connections
from django.test import override_settings

_counter = itertools.count(1)


def _wants_rolled_back_db(request: pytest.FixtureRequest) -> bool:
    """True for tests on the ordinary (rolled-back, non-transactional) database fixture."""
    names = request.fixturenames
    if "transactional_db" in names or "live_server" in names:
        return False
    marker = request.node.get_closest_marker("django_db")
    if marker is not None:
        return not (marker.kwargs.get("transaction") or (marker.args and marker.args[0]))
    return "db" in names


@pytest.fixture(autouse=True)
def _async_worker_shares_test_connection(request: pytest.FixtureRequest) -> Iterator[None]:
    """Give asgiref's ``sync_to_async`` worker thread the test's own database connection.

    pytest-asyncio runs async tests on an event loop in the main thread, so every
    ``sync_to_async`` call (the services' async twins, the async ORM) runs in asgiref's single
    worker thread. That thread would otherwise open a second connection outside the test's
    rolled-back transaction: its writes would survive the test and leak into later ones. Django's
    own async ``TestCase`` avoids this by running the test under ``async_to_sync``; this fixture
    gets the same effect for pytest-style async tests (the main thread only awaits meanwhile).
    Transactional tests keep separate connections, as real concurrency needs. Afterwards the
    worker's own connection is closed, so PostgreSQL can drop the test database at the end.
    """
    shared = _wants_rolled_back_db(request)
    # The async consume runs on connections of its own (the async pool), which cannot see the
    # test's rolled-back transaction and could wait for its row locks: off for these tests.
    isolated = override_settings(BILLABLE_ASYNC_CONSUME=False)
    if shared:
        isolated.enable()
        main = connections["default"]
        main.inc_thread_sharing()

        def share() -> None:
            connections["default"] = main

        SyncToAsync.single_thread_executor.submit(share).result()
    yield

    def release() -> None:
        if shared:
            del connections["default"]
        connections.close_all()

    SyncToAsync.single_thread_executor.submit(release).result()
    if shared:
        main.dec_thread_sharing()
        isolated.disable()


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
