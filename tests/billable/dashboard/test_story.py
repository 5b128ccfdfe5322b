"""What the services write is what the dashboard counts: trial → purchase → use → refund."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from billable.dashboard import NO_BOT
from billable.selectors.dashboard import DashboardQuery, build_dashboard
from billable.selectors.dashboard_export import dashboard_data
from billable.services import OrderService, TransactionService
from billable.services.trials import TrialService

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(make_product: Callable[..., Any], make_offer: Callable[..., Any]) -> None:
    credits = make_product("CREDITS")
    make_offer("PACK_XTR", items=[(credits, 100)], price="50", currency="XTR", name="Pack")
    make_offer("PACK_USD", items=[(credits, 100)], price="4.99", currency="USD", name="Pack $")
    make_offer("TRIAL", items=[(credits, 10)], price="0", currency="XTR", name="Trial")


def _buy(user: Any, sku: str, *, quantity: int = 1, bot: str | None = None) -> Any:
    metadata = {"bot_id": bot} if bot else {}
    order = OrderService.create_order(user.pk, [{"sku": sku, "quantity": quantity}],
                                      metadata=metadata)
    return OrderService.pay_order(order.pk, payment_id=f"pay-{order.pk}",
                                  payment_method="test")


def figures(bot: str | None = None) -> dict[str, Any]:
    today = timezone.localdate()
    return dashboard_data(build_dashboard(DashboardQuery(today, today, bot)))


def test_trial_purchase_usage_and_refund(shop: None, make_user: Callable[..., Any]) -> None:
    alice, bob, carol = make_user(), make_user(), make_user()
    TrialService.claim_trial(alice.pk, "TRIAL", metadata={"bot_id": "111"})
    TrialService.claim_trial(carol.pk, "TRIAL")
    _buy(alice, "PACK_XTR", bot="111")
    assert TransactionService.consume_quota(alice.pk, "CREDITS", amount=3,
                                            metadata={"bot_id": "111"})["success"]
    refunded = _buy(bob, "PACK_USD", quantity=2)
    OrderService.refund_paid_order(refunded.pk, reason="test")
    pending = OrderService.create_order(carol.pk, [{"sku": "PACK_USD"}])
    assert pending.status == "pending"

    data = figures()
    xtr, usd = data["revenue"]["XTR"], data["revenue"]["USD"]
    assert (xtr["gross"], xtr["refunded"], xtr["net"], xtr["orders"]) == ("50.00", "0.00",
                                                                          "50.00", 1)
    assert (usd["gross"], usd["refunded"], usd["net"], usd["refunded_orders"]) == (
        "9.98", "9.98", "0.00", 1)
    assert usd["by_offer"] == [{"sku": "PACK_USD", "name": "Pack $", "units": 2,
                                "gross": "9.98", "refunded": "9.98", "net": "0.00",
                                "orders": 1, "refunded_orders": 1}]
    assert data["totals"] == {"paying_users": 2, "orders": 2, "refunded_orders": 1,
                              "refund_rate": "0.5000"}
    assert data["conversion"] == {"trial_users": 2, "converted": 1, "rate": "0.5000"}
    # the refund's revocation of bob's credits is not consumption
    assert data["consumption"] == [{"product_key": "CREDITS", "name": "Credits", "units": 3,
                                    "debits": 1, "users": 1}]
    assert data["bots"] == ["111"]

    bot = figures("111")
    assert list(bot["revenue"]) == ["XTR"]
    assert bot["conversion"] == {"trial_users": 1, "converted": 1, "rate": "1.0000"}
    assert bot["consumption"][0]["units"] == 3

    other = figures(NO_BOT)
    assert list(other["revenue"]) == ["USD"]
    assert other["conversion"] == {"trial_users": 1, "converted": 0, "rate": "0.0000"}
    assert other["consumption"] == []


def test_a_purchase_before_the_trial_is_not_a_conversion(
        shop: None, make_user: Callable[..., Any]) -> None:
    dave = make_user()
    _buy(dave, "PACK_XTR")
    TrialService.claim_trial(dave.pk, "TRIAL")
    assert figures()["conversion"] == {"trial_users": 1, "converted": 0, "rate": "0.0000"}
    _buy(dave, "PACK_XTR")
    assert figures()["conversion"]["converted"] == 1


def test_free_orders_are_not_revenue(shop: None, make_user: Callable[..., Any]) -> None:
    _buy(make_user(), "TRIAL")
    data = figures()
    assert data["revenue"] == {} and data["totals"]["paying_users"] == 0
    assert data["totals"]["refund_rate"] is None and data["conversion"]["rate"] is None
