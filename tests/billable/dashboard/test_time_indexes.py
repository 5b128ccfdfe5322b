"""The dashboard's time-range indexes (migration 0013): they exist, and the dashboard's range
queries can use them instead of reading the whole orders or ledger table."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from billable.dashboard import Period
from billable.selectors.dashboard import consumption_rows, sold_orders
from tests.billable.ledger_support import make_batch
from tests.helpers import requires_postgres

pytestmark = pytest.mark.django_db

ORDER_INDEX = "billable_order_paid_idx"
LEDGER_INDEX = "billable_txn_created_brin"


def indexes(table: str) -> dict[str, dict[str, Any]]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, table)
    return {name: about for name, about in found.items() if about["index"]}


def day_period(day: date) -> Period:
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.get_current_timezone())
    return Period(start=start, end=start + timedelta(days=1), days=(day,),
                  now=timezone.now())


def plan(queryset: Any) -> str:
    """The plan PostgreSQL picks for ``queryset``."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def two_hundred_days(user: Any, batch: Any, last: datetime) -> None:
    """200 days of history before ``last``, written in time order as a live install writes it:
    200,000 ledger rows and 20,000 paid orders; then fresh statistics."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billable_transactions (id, user_id, quota_batch_id, amount, direction,"
            " action_type, metadata, created_at) SELECT gen_random_uuid(), %s, %s, 1,"
            " 'DEBIT', 'usage', '{}'::jsonb, %s - (200000 - g) * interval '86.4 seconds'"
            " FROM generate_series(1, 200000) g", [user.pk, batch.pk, last])
        cursor.execute(
            "INSERT INTO billable_orders (user_id, total_amount, currency, status,"
            " payment_method, payment_id, metadata, created_at, paid_at) SELECT %s, 50, 'XTR',"
            " 'paid', '', NULL, '{}'::jsonb, t, t FROM (SELECT %s - (20000 - g)"
            " * interval '864 seconds' AS t FROM generate_series(1, 20000) g) s",
            [user.pk, last])
        cursor.execute("ANALYZE billable_transactions")
        cursor.execute("ANALYZE billable_orders")


def test_orders_paid_in_a_range_have_an_index() -> None:
    found = indexes("billable_orders")
    assert found[ORDER_INDEX]["columns"] == ["paid_at"]


@requires_postgres
def test_ledger_rows_created_in_a_range_have_a_brin_index() -> None:
    found = indexes("billable_transactions")
    assert found[LEDGER_INDEX]["columns"] == ["created_at"]
    assert found[LEDGER_INDEX]["type"] == "brin"


@requires_postgres
def test_a_day_of_a_large_install_is_read_through_them(user: Any, make_product: Any) -> None:
    """With 200 days of history, the planner reads one day of orders and of ledger rows through
    the new indexes (before migration 0013: a scan of both whole tables)."""
    today = timezone.localdate()
    period = day_period(today - timedelta(days=3))
    batch = make_batch(user, make_product("CREDITS"), 1)
    two_hundred_days(user, batch, period.end + timedelta(days=3))
    orders, ledger = plan(sold_orders(period, by_bot=False)), plan(consumption_rows(period))
    assert ORDER_INDEX in orders, orders
    assert LEDGER_INDEX in ledger, ledger
    assert "Seq Scan" not in orders + ledger
    assert sold_orders(period, by_bot=False).count() == 100
    assert consumption_rows(period).count() == 1000


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_the_migration_goes_back_and_forth() -> None:
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([("billable", "0012_identity_change_trigger")])
        assert ORDER_INDEX not in indexes("billable_orders")
        assert LEDGER_INDEX not in indexes("billable_transactions")
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert ORDER_INDEX in indexes("billable_orders")
    assert LEDGER_INDEX in indexes("billable_transactions")
