"""The dashboard's figures equal a straightforward recomputation, on SQLite and PostgreSQL.

``dashboard_data(build_dashboard(query))`` (GROUP BY in the database) is compared whole with
:class:`tests.billable.dashboard.reference.Reference` (every row loaded, Python loops) on the
generated data set, for two time zones (one crossing a summer-time change), every bot filter,
and a "now" inside the range (subscriptions cannot churn in the future).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billable.dashboard import NO_BOT
from billable.models import Order, OrderItem
from billable.selectors.dashboard import DashboardQuery, build_dashboard, parse_query
from billable.selectors.dashboard_export import dashboard_data
from tests.billable.dashboard.dataset import (
    FIRST_DAY,
    LAST_DAY,
    ZONES,
    make_catalog,
    make_dataset,
)
from tests.billable.dashboard.reference import Reference

pytestmark = pytest.mark.django_db


def compare(start: date, end: date, bot: str | None, now: datetime) -> dict[str, Any]:
    """Build both, assert every section equal, return the dashboard's data."""
    data = dashboard_data(build_dashboard(DashboardQuery(start, end, bot), now=now))
    ref = Reference(start, end, timezone.get_current_timezone(), bot, now)
    assert data["revenue"] == ref.revenue()
    assert data["totals"] == ref.totals()
    assert data["conversion"] == ref.conversion()
    assert data["consumption"] == ref.consumption()
    assert data["subscriptions"] == {"available": True, "sources": [ref.subscriptions()]}
    return data


def test_figures_equal_the_reference_computation() -> None:
    make_dataset()
    inside = datetime(2025, 3, 10, 15, 30, tzinfo=ZONES[0])
    later = timezone.now()
    seen_currencies, seen_conversions = set(), 0
    for zone in ZONES:
        with timezone.override(zone):
            for bot in (None, "111", NO_BOT):
                for now in (later, inside):
                    data = compare(FIRST_DAY, LAST_DAY, bot, now)
                    seen_currencies |= set(data["revenue"])
                    seen_conversions += data["conversion"]["converted"]
            compare(date(2025, 3, 9), date(2025, 3, 9), None, later)  # the 23-hour day
    assert seen_currencies == {"XTR", "USD"}  # the data set really exercises the comparison
    assert seen_conversions > 0


def test_the_data_set_is_not_trivial() -> None:
    """Guards the comparison above against a data set that would make it vacuous."""
    make_dataset()
    data = dashboard_data(build_dashboard(DashboardQuery(FIRST_DAY, LAST_DAY)))
    for currency in ("XTR", "USD"):
        revenue = data["revenue"][currency]
        assert revenue["orders"] > 5 and revenue["refunded_orders"] > 0
        assert sum(1 for day in revenue["by_day"] if day["orders"]) >= 7
        assert len(revenue["by_offer"]) >= 2
    assert data["conversion"]["trial_users"] > data["conversion"]["converted"] > 0
    assert {line["product_key"] for line in data["consumption"]} == {"CREDITS", "PDF", "PRO"}
    source = data["subscriptions"]["sources"][0]
    assert source["new"] > 0 and source["churned"] > 0 and source["active_at_start"] > 0
    assert set(data["bots"]) == {"111", "222"}


def test_query_count_does_not_grow_with_the_data() -> None:
    query = DashboardQuery(FIRST_DAY, LAST_DAY)
    catalog = make_dataset(seed=1, users=3, orders=5, debits=5)
    with CaptureQueriesContext(connection) as small:
        build_dashboard(query)
    make_dataset(seed=2, users=20, orders=150, debits=200, catalog=catalog)
    with CaptureQueriesContext(connection) as large:
        build_dashboard(query)
    assert len(small.captured_queries) == len(large.captured_queries) <= 12


def test_a_full_year_is_one_query_per_figure() -> None:
    make_dataset(seed=3, users=4, orders=20, debits=20)
    query = parse_query(start="2024-06-01", end="2025-05-31")
    assert query.days == 365
    with CaptureQueriesContext(connection) as year:
        dashboard = build_dashboard(query)
    assert len(year.captured_queries) <= 12
    assert len(dashboard.revenue[0].by_day) == 365
    assert len(dashboard.subscriptions[0].figures.active_by_day) == 365  # type: ignore[union-attr]


def test_money_is_never_added_across_currencies() -> None:
    make_dataset()
    dashboard = build_dashboard(DashboardQuery(FIRST_DAY, LAST_DAY))
    data = dashboard_data(dashboard)
    assert "gross" not in data["totals"] and "net" not in data["totals"]
    assert [r.currency for r in dashboard.revenue] == ["XTR", "USD"]  # Stars first
    assert [r.kind for r in dashboard.revenue] == ["stars", "fiat"]
    for revenue in dashboard.revenue:
        assert revenue.net == revenue.gross - revenue.refunded
        assert revenue.gross == sum((d.gross for d in revenue.by_day), Decimal(0))


def test_days_follow_the_current_time_zone() -> None:
    """An order paid at 02:00 UTC on 5 March is a 4 March order in New York."""
    catalog = make_catalog()
    user = get_user_model().objects.create(username="tz")
    order = Order.objects.create(user=user, currency="USD", status="paid",
                                 total_amount=Decimal("4.99"),
                                 paid_at=datetime(2025, 3, 5, 2, 0, tzinfo=ZONES[0]))
    OrderItem.objects.create(order=order, offer=catalog.offers["PACK_USD"], quantity=1,
                             price=Decimal("4.99"))
    query = DashboardQuery(date(2025, 3, 4), date(2025, 3, 5))
    for zone, busy_day in ((ZONES[0], "2025-03-05"), (ZONES[1], "2025-03-04")):
        with timezone.override(zone):
            days = dashboard_data(build_dashboard(query))["revenue"]["USD"]["by_day"]
        assert [d["day"] for d in days if d["orders"]] == [busy_day]


def test_range_boundaries_are_inclusive_days() -> None:
    user = get_user_model().objects.create(username="edges")
    start = datetime(2025, 3, 4, tzinfo=ZONES[0])
    for paid_at in (start - timedelta(microseconds=1), start,
                    start + timedelta(days=2) - timedelta(microseconds=1),
                    start + timedelta(days=2)):
        Order.objects.create(user=user, currency="XTR", status="paid",
                             total_amount=Decimal(1), paid_at=paid_at)
    with timezone.override(ZONES[0]):
        dashboard = build_dashboard(DashboardQuery(date(2025, 3, 4), date(2025, 3, 5)))
    assert dashboard.revenue[0].orders == 2
