"""The subscription registry: bot_kit contributes through it; nothing registered → not
available; a failing source is reported, never a crash."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date

import pytest
from django.db import connection

from billable.dashboard import (
    Period,
    SubscriptionFigures,
    register_subscriptions,
    subscription_sources,
    unregister_subscriptions,
)
from billable.models import Order
from billable.selectors.dashboard import DashboardQuery, build_dashboard
from billable.selectors.dashboard_export import dashboard_data
from bot_kit import dashboard as bot_kit_dashboard

pytestmark = pytest.mark.django_db
QUERY = DashboardQuery(date(2025, 3, 1), date(2025, 3, 3))


@pytest.fixture
def no_sources() -> Iterator[None]:
    saved = subscription_sources()
    for contribution in saved:
        unregister_subscriptions(contribution.name)
    yield
    for contribution in subscription_sources():
        unregister_subscriptions(contribution.name)
    for contribution in saved:
        register_subscriptions(contribution.name, contribution.source, label=contribution.label)


def test_bot_kit_contributes_from_its_app_config() -> None:
    [contribution] = subscription_sources()
    assert contribution.name == "telegram_stars"
    assert contribution.source is bot_kit_dashboard.star_subscriptions


def test_nothing_registered_means_not_available(no_sources: None) -> None:
    dashboard = build_dashboard(QUERY)
    assert not dashboard.subscriptions_available
    assert dashboard_data(dashboard)["subscriptions"] == {"available": False, "sources": []}


def test_a_failing_source_is_reported_not_raised(no_sources: None,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    def broken(period: Period) -> SubscriptionFigures:
        raise RuntimeError("table missing")

    def steady(period: Period) -> SubscriptionFigures:
        days = len(period.days)
        return SubscriptionFigures(active_at_start=4, active_at_end=5, new=2, churned=1,
                                   active_by_day=(5,) * days)

    register_subscriptions("broken", broken)
    register_subscriptions("steady", steady, label="Web plans")
    with caplog.at_level(logging.ERROR, logger="billable.dashboard"):
        data = dashboard_data(build_dashboard(QUERY))
    assert "dashboard subscription source broken failed" in caplog.text
    broken_result, steady_result = data["subscriptions"]["sources"]
    assert broken_result == {"name": "broken", "label": "broken", "available": False}
    assert steady_result["label"] == "Web plans" and steady_result["churn_rate"] == "0.2500"
    assert [d["active"] for d in steady_result["active_by_day"]] == [5, 5, 5]


def test_a_source_whose_query_fails_leaves_the_transaction_usable(no_sources: None) -> None:
    """The test runs inside a transaction, as a request does under ``ATOMIC_REQUESTS``."""
    def missing_table(period: Period) -> SubscriptionFigures:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM no_such_subscriptions")
        raise AssertionError("unreachable")

    register_subscriptions("missing", missing_table)
    dashboard = build_dashboard(QUERY)
    assert [result.failed for result in dashboard.subscriptions] == [True]
    assert Order.objects.count() == 0  # still usable (on PostgreSQL too)


def test_churn_rate_is_undefined_without_subscribers_at_the_start() -> None:
    figures = SubscriptionFigures(active_at_start=0, active_at_end=3, new=3, churned=0,
                                  active_by_day=(1, 2, 3))
    assert figures.churn_rate is None
