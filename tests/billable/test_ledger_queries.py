"""Query budgets of the hot paths, asserted with CaptureQueriesContext."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billable.models import Order, OrderItem, Transaction
from billable.services import TransactionService, holds
from tests.billable.ledger_support import make_batch

pytestmark = pytest.mark.django_db

CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "BEGIN", "COMMIT")


def data_statements(context: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in context.captured_queries
            if not q["sql"].lstrip().upper().startswith(CONTROL)]


@pytest.fixture(autouse=True)
def _no_event_endpoints_known(settings):
    """No outbound event endpoint, and the process already knows it: the endpoint set is read
    once per ``BILLABLE_EVENTS_ENDPOINTS_CACHE`` seconds, not per operation (budgets below
    hold from then on; tests/billable/events cover the writes when an endpoint exists)."""
    from billable.events.outbox import subscribed_types

    settings.BILLABLE_EVENTS_ENDPOINTS_CACHE = 3600
    subscribed_types.clear()
    assert subscribed_types.get() == frozenset()
    yield
    subscribed_types.clear()


@pytest.fixture
def credits(make_product):
    return make_product("CREDITS")


def test_check_quota_and_get_balance_cost_one_query(user, credits):
    for age in range(5):
        make_batch(user, credits, 3, age_days=age)
    with CaptureQueriesContext(connection) as ctx:
        assert TransactionService.check_quota(user.id, "credits")["remaining"] == 15
    assert len(data_statements(ctx)) == 1
    with CaptureQueriesContext(connection) as ctx:
        assert TransactionService.get_balance(user.id, "credits") == 15
    assert len(data_statements(ctx)) == 1


@pytest.mark.parametrize("key", [None, "job-1"])
def test_consume_touching_one_batch_costs_at_most_four_statements(user, credits, key):
    make_batch(user, credits, 10)
    with CaptureQueriesContext(connection) as ctx:
        result = TransactionService.consume_quota(user.id, "CREDITS", amount=2,
                                                  idempotency_key=key)
    assert result["success"] is True
    statements = data_statements(ctx)
    assert len(statements) == (4 if key else 3), statements


def test_consume_key_lookup_does_not_scan_the_ledger(user, credits):
    make_batch(user, credits, 1000)
    for index in range(50):
        TransactionService.consume_quota(user.id, "CREDITS", idempotency_key=f"k{index}")
    with CaptureQueriesContext(connection) as ctx:
        TransactionService.consume_quota(user.id, "CREDITS", idempotency_key="fresh")
    assert not any("billable_transactions" in sql and "SELECT" in sql.upper()[:10]
                   for sql in data_statements(ctx))


@pytest.mark.parametrize("items", [1, 6])
def test_grant_offer_costs_a_constant_number_of_statements(user, make_product, make_offer,
                                                           items):
    products = [make_product(f"P_{items}_{i}", product_type="quantity" if i % 2 else "period")
                for i in range(items)]
    offer = make_offer(items=[(p, 3, "days", 30) for p in products])
    ContentType.objects.get_for_model(OrderItem)  # the content-type cache is process-wide
    order = Order.objects.create(user=user)
    line = OrderItem.objects.create(order=order, offer=offer, quantity=2, price=0)
    with CaptureQueriesContext(connection) as ctx:
        batches = TransactionService.grant_offer(user.id, offer, order_item=line)
    assert len(batches) == items
    # offer items + user (locked for periods) + running periods + batches + ledger rows
    assert len(data_statements(ctx)) == 5, data_statements(ctx)


def test_grant_many_is_constant_in_the_number_of_lines(user, make_product, make_offer):
    product = make_product("BULK")
    offers = [make_offer(items=[(product, n + 1)]) for n in range(8)]
    TransactionService.grant_offer(user.id, offers[0])
    with CaptureQueriesContext(connection) as one:
        TransactionService.grant_many(user.id, [(offers[0], None)])
    with CaptureQueriesContext(connection) as many:
        TransactionService.grant_many(user.id, [(o, None) for o in offers])
    assert len(data_statements(many)) == len(data_statements(one)) == 4


@pytest.mark.parametrize("key", [None, "hold-1"])
def test_reserve_touching_one_batch_costs_at_most_five_statements(user, credits, key):
    make_batch(user, credits, 10)
    with CaptureQueriesContext(connection) as ctx:
        rid = TransactionService.reserve_quota(user.id, "CREDITS", 3, idempotency_key=key)
    assert TransactionService.get_balance(user.id, "CREDITS") == 7
    # (key INSERT) + SELECT … FOR UPDATE + UPDATE batch + INSERT hold + INSERT items
    statements = data_statements(ctx)
    assert len(statements) == (5 if key else 4), statements
    with CaptureQueriesContext(connection) as ctx:
        again = TransactionService.reserve_quota(user.id, "CREDITS", 3, idempotency_key=key)
    if key:  # a replay is the key INSERT that does nothing, plus the read of the stored row
        assert again == rid and len(data_statements(ctx)) == 2


def test_commit_of_a_whole_hold_costs_four_statements(user, credits):
    make_batch(user, credits, 2, age_days=2)
    make_batch(user, credits, 10, age_days=1)
    rid = TransactionService.reserve_quota(user.id, "CREDITS", 5)
    with CaptureQueriesContext(connection) as ctx:
        result = TransactionService.commit_reservation(rid)
    assert (result["amount"], result["remaining"]) == (5, 7)
    # lock hold + items + product, UPDATE hold, one multi-row DEBIT INSERT, balance read
    assert len(data_statements(ctx)) == 4, data_statements(ctx)
    assert Transaction.objects.filter(direction="DEBIT").count() == 2


def test_commit_without_balance_skips_the_balance_read(user, credits):
    make_batch(user, credits, 10)
    rid = TransactionService.reserve_quota(user.id, "CREDITS", 4)
    with CaptureQueriesContext(connection) as ctx:
        result = holds.commit(rid, balance=False)
    assert (result["success"], result["amount"], result["remaining"]) == (True, 4, None)
    assert len(data_statements(ctx)) == 3, data_statements(ctx)
    assert TransactionService.get_balance(user.id, "CREDITS") == 6
    assert TransactionService.check_ledger() == []


def test_partial_commit_returns_the_rest_with_a_constant_number_of_statements(user, credits):
    for age in range(4):
        make_batch(user, credits, 2, age_days=age)
    rid = TransactionService.reserve_quota(user.id, "CREDITS", 8)
    with CaptureQueriesContext(connection) as ctx:
        result = TransactionService.commit_reservation(rid, 3)
    assert (result["amount"], result["remaining"]) == (3, 5)
    # + one conditional UPDATE per batch that gets units back
    assert len(data_statements(ctx)) == 4 + 3, data_statements(ctx)
    assert TransactionService.check_ledger() == []
