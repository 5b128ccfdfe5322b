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
    """The plan PostgreSQL picks for ``queryset`` when a sequential scan is its last resort."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_orders_paid_in_a_range_have_an_index() -> None:
    found = indexes("billable_orders")
    assert found[ORDER_INDEX]["columns"] == ["paid_at"]


@requires_postgres
def test_ledger_rows_created_in_a_range_have_a_brin_index() -> None:
    found = indexes("billable_transactions")
    assert found[LEDGER_INDEX]["columns"] == ["created_at"]
    assert found[LEDGER_INDEX]["type"] == "brin"


@requires_postgres
def test_the_dashboard_range_queries_can_use_them() -> None:
    period = day_period(timezone.localdate())
    assert ORDER_INDEX in plan(sold_orders(period, by_bot=False))
    assert LEDGER_INDEX in plan(consumption_rows(period))


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
