"""Fixtures of the growth tests: a small catalog, and builders for codes and gifts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def shop(make_product: Callable[..., Any], make_offer: Callable[..., Any]) -> dict[str, Any]:
    """CREDITS sold as PACK_10 (50 ⭐) and USD_PACK (9.99 USD); FREE_5 (free) to give away."""
    credits = make_product("CREDITS", name="Credits")
    return {
        "credits": credits,
        "pack": make_offer("PACK_10", items=[(credits, 10)], price="50", currency="XTR",
                           name="10 credits"),
        "usd": make_offer("USD_PACK", items=[(credits, 100)], price="9.99", currency="USD",
                          name="100 credits"),
        "free": make_offer("FREE_5", items=[(credits, 5)], price="0", name="5 credits"),
    }


@pytest.fixture
def make_code() -> Callable[..., Any]:
    """Builder: ``make_code("SPRING", offer=..., kind="grant", max_uses=10)``."""
    from billable.models import PromoCode

    def build(code: str = "SPRING", **fields: Any) -> Any:
        return PromoCode.objects.create(code=code, **fields)

    return build


@pytest.fixture
def paid_gift(shop: dict[str, Any]) -> Callable[..., Any]:
    """Builder: ``paid_gift(buyer)`` → a ready gift of PACK_10 paid with charge ``g-<n>``."""
    from billable.growth.gifts import GiftService

    counter = iter(range(1, 10_000))

    def build(buyer: Any, sku: str = "PACK_10") -> Any:
        gift = GiftService.create_gift(buyer.pk, sku)
        GiftService.pay_gift_order(gift.order_id, payment_id=f"g-{next(counter)}",
                                   payment_method="telegram_stars")
        gift.refresh_from_db()
        return gift

    return build
