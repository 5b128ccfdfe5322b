"""Fixtures of the purchase-flow tests: a Stars catalog, a payments config, a wired Dispatcher."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiogram import Dispatcher

from bot_kit.config import BillingConfig

ADMIN_ID = 900_001
SECRETS = ("new-secret-0123456789", "old-secret-9876543210")


@pytest.fixture
def config() -> BillingConfig:
    return BillingConfig(offers=("STARS_10", "USD_PACK"), signing_secrets=SECRETS,
                         admin_ids=frozenset({ADMIN_ID}), subscription_offers=("PRO_MONTH",),
                         precheckout_timeout=0.2)


@pytest.fixture
def catalog(make_product: Callable[..., Any], make_offer: Callable[..., Any]) -> dict[str, Any]:
    """CREDITS (quantity) sold as STARS_10 for 50 ⭐; PRO (period) as PRO_MONTH for 100 ⭐."""
    credits = make_product("CREDITS", name="Credits")
    pro = make_product("PRO", name="Pro access", product_type="period")
    stars = make_offer("STARS_10", items=[(credits, 10)], price="50", currency="XTR",
                       name="10 credits", description="Ten credits for the bot")
    usd = make_offer("USD_PACK", items=[(credits, 100)], price="4.99", currency="USD",
                     name="100 credits")
    month = make_offer("PRO_MONTH", items=[(pro, 1, "days", 30)], price="100",
                       currency="XTR", name="Pro monthly")
    return {"credits": credits, "pro": pro, "stars": stars, "usd": usd, "month": month}


@pytest.fixture
def dp(make_dp: Callable[..., Dispatcher], config: BillingConfig) -> Dispatcher:
    return make_dp(config)
