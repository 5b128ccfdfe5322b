"""The single-statement consume (``sql.take_first``) against the general path.

Every scenario runs twice on twin users with identical wallets: once as shipped (on PostgreSQL
the single-batch path runs, in autocommit or inside the caller's transaction) and once with the
single-statement path switched off (the general path only). Results, ledger rows, batch states,
signals and outbound events must be the same. On SQLite both runs take the general path.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from billable.events.outbox import subscribed_types
from billable.exceptions import IdempotencyConflict, InsufficientFunds, QuotaExhausted
from billable.ledger import sql
from billable.models import (
    EventEndpoint,
    IdempotencyKey,
    OutboxEvent,
    Product,
    QuotaBatch,
    Transaction,
)
from billable.services import TransactionService
from tests.billable.ledger_support import make_batch
from tests.helpers import is_postgres, requires_postgres, run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "CREDITS"

#: (quantity, options of ``make_batch``) per batch; the consumes; the settings.
SCENARIOS: dict[str, tuple[list[tuple[int, dict[str, Any]]], list[dict[str, Any]]]] = {
    "one batch covers, then exhausts": (
        [(10, {"age_days": 1})],
        [{"amount": 3}, {"amount": 7}, {"amount": 1}],
    ),
    "several batches, the first too small": (
        [(2, {"age_days": 3}), (10, {"age_days": 2}), (4, {"age_days": 1})],
        [{"amount": 5}, {"amount": 1}, {"amount": 7}, {"amount": 3}, {"amount": 1}],
    ),
    "insufficient balance": (
        [(3, {"age_days": 2}), (1, {"age_days": 1})],
        [{"amount": 5}, {"amount": 4}, {"amount": 1}],
    ),
    "no batch at all": ([], [{"amount": 1}]),
    "expired and not yet valid batches are skipped": (
        [(50, {"age_days": 5, "expires_in_days": -1}), (50, {"age_days": 4, "valid_in_days": 1}),
         (6, {"age_days": 3})],
        [{"amount": 2}, {"amount": 4}, {"amount": 1}],
    ),
    "action id and metadata": (
        [(9, {"age_days": 1})],
        [{"amount": 2, "action_id": "msg-1", "action_type": "generation",
          "metadata": {"model": "m"}}],
    ),
    "idempotency replay and conflict": (
        [(4, {"age_days": 2}), (8, {"age_days": 1})],
        [{"amount": 3, "idempotency_key": "a"}, {"amount": 3, "idempotency_key": "a"},
         {"amount": 2, "idempotency_key": "a"}, {"amount": 3, "idempotency_key": "b"},
         {"amount": 20, "idempotency_key": "c"}, {"amount": 1}],
    ),
}


@pytest.fixture
def general_only(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    """``switch(False)`` turns the single-statement path off (the general path only)."""

    def switch(on: bool) -> None:
        monkeypatch.setattr(sql, "FIRST_LOT_VENDORS", sql.FIRST_LOT_VENDORS if on else frozenset())

    return switch


def _wallet(user: Any, product: Any, batches: list[tuple[int, dict[str, Any]]]) -> list[Any]:
    return [make_batch(user, product, quantity, **options).pk for quantity, options in batches]


def _plain(result: dict[str, Any], usage_ids: dict[str, int]) -> dict[str, Any]:
    """A result with its usage id replaced by its order of appearance (ids differ per run)."""
    shown = dict(result)
    if "usage_id" in shown:
        shown["usage_id"] = usage_ids.setdefault(shown["usage_id"], len(usage_ids))
    return shown


def _row(row: Any, order: list[Any]) -> tuple[Any, ...]:
    meta = dict(row.metadata)
    return (order.index(row.quota_batch_id), row.amount, str(row.direction),
            row.action_type, row.object_id, row.content_type_id, meta)


def _keys(user: Any) -> list[tuple[Any, ...]]:
    """The user's idempotency key rows (the stored answer's usage id by order of appearance)."""
    usage_ids: dict[str, int] = {}
    return [(k.key, k.operation, k.fingerprint,
             _plain(k.result, usage_ids) if "usage_id" in k.result else k.result)
            for k in IdempotencyKey.objects.filter(user=user).order_by("created_at", "key")]


def _state(user: Any, order: list[Any]) -> dict[str, Any]:
    # The rows of one consume share ``created_at``; their ids are random within it.
    rows = sorted(Transaction.objects.filter(user=user),
                  key=lambda r: (r.created_at, order.index(r.quota_batch_id), r.direction))
    batches = QuotaBatch.objects.in_bulk(order)
    return {
        "keys": _keys(user),
        "rows": [_row(r, order) for r in rows],
        "batches": [(batches[pk].remaining_quantity, batches[pk].state) for pk in order],
        "ledger": TransactionService.check_ledger(user_id=user.pk),
    }


def _run(user: Any, order: list[Any], calls: list[dict[str, Any]],
         heard: list[tuple[str, Any]], *, atomic: bool = False) -> dict[str, Any]:
    heard.clear()
    usage_ids: dict[str, int] = {}
    results = []
    for call in calls:
        if atomic:
            with transaction.atomic():
                result = TransactionService.consume_quota(user.pk, KEY, **call)
        else:
            result = TransactionService.consume_quota(user.pk, KEY, **call)
        results.append(_plain(result, usage_ids))
    signals = [(name, _row(row, order)) for name, row in heard]
    return {"results": results, "signals": signals, **_state(user, order)}


def _both_paths(make_user: Any, product: Any, batches: Any, calls: list[dict[str, Any]],
                heard: list[tuple[str, Any]], general_only: Callable[[bool], None], *,
                atomic: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same calls on twin wallets: with the single-statement path on, then off."""
    fast_user, general_user = make_user(), make_user()
    fast_order = _wallet(fast_user, product, batches)
    general_order = _wallet(general_user, product, batches)
    general_only(True)
    fast = _run(fast_user, fast_order, calls, heard, atomic=atomic)
    general_only(False)
    general = _run(general_user, general_order, calls, heard, atomic=atomic)
    return fast, general


@pytest.mark.parametrize("atomic", [False, True], ids=["autocommit", "in-transaction"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_single_statement_and_general_path_agree(name, atomic, make_user, make_product,
                                                 general_only, heard):
    batches, calls = SCENARIOS[name]
    product = make_product(KEY)
    fast, general = _both_paths(make_user, product, batches, calls, heard, general_only,
                                atomic=atomic)

    assert fast == general
    assert fast["ledger"] == []


@pytest.mark.parametrize("order", ["expiring_first", "oldest_first"])
def test_consumption_order_is_kept(order, make_user, make_product, general_only, heard,
                                   settings):
    settings.BILLABLE_CONSUMPTION_ORDER = order
    product = make_product(KEY)
    batches = [(5, {"age_days": 3}), (5, {"age_days": 2, "expires_in_days": 5}),
               (5, {"age_days": 1, "expires_in_days": 2})]
    calls = [{"amount": 2}, {"amount": 3}, {"amount": 4}, {"amount": 6}]
    fast, general = _both_paths(make_user, product, batches, calls, heard, general_only)

    assert fast == general
    first = 2 if order == "expiring_first" else 0
    assert fast["rows"][3][:2] == (first, 2)  # the first DEBIT after the three CREDIT rows


def test_entitlements_keep_the_general_path(make_user, make_product, general_only, heard):
    product = make_product(KEY, product_type=Product.ProductType.PERIOD)
    batches = [(1, {"age_days": 1, "expires_in_days": 3})]
    calls = [{"amount": 4}, {"amount": 1, "idempotency_key": "p"}]
    fast, general = _both_paths(make_user, product, batches, calls, heard, general_only)

    assert fast == general
    assert fast["rows"][1][1] == 0 and fast["rows"][1][6]["requested_amount"] == 4


def test_outbound_events_are_the_same(make_user, make_product, general_only, heard, settings):
    settings.BILLABLE_EVENTS_QUOTA_LOW = 3
    subscribed_types.clear()
    EventEndpoint.objects.create(url="http://127.0.0.1:9/none",
                                 event_types=["quota.low", "quota.exhausted"])
    product = make_product(KEY)
    batches = [(4, {"age_days": 2}), (4, {"age_days": 1})]
    calls = [{"amount": 2}, {"amount": 4}, {"amount": 1}, {"amount": 1}]
    runs = []
    try:
        for on in (True, False):
            general_only(on)
            user = make_user()
            order = _wallet(user, product, batches)
            OutboxEvent.objects.all().delete()
            state = _run(user, order, calls, heard)
            events = [(e.event_type, {k: v for k, v in e.payload.items()
                                      if k not in {"usage_id", "user_id"}})
                      for e in OutboxEvent.objects.order_by("id")]
            runs.append((state, events))
    finally:
        subscribed_types.clear()
    assert runs[0] == runs[1]
    assert [kind for kind, _ in runs[0][1]] == ["quota.low", "quota.exhausted"]


@requires_postgres
def test_an_unkeyed_consume_is_one_statement(user, make_product):
    product = make_product(KEY)
    make_batch(user, product, 10)
    TransactionService.consume_quota(user.pk, KEY)  # the endpoint set is read once, cached
    with CaptureQueriesContext(connection) as queries:
        result = TransactionService.consume_quota(user.pk, KEY, amount=2)
    assert result["success"] and result["remaining"] == 7
    assert len(queries.captured_queries) == 1, [q["sql"][:80] for q in queries.captured_queries]


@requires_postgres
def test_a_keyed_consume_is_one_statement(user, make_product):
    """The key claim, the take and the DEBIT in one statement, in autocommit; a replay and a
    conflicting reuse write nothing there and are answered by the general path."""
    product = make_product(KEY)
    make_batch(user, product, 10)
    TransactionService.consume_quota(user.pk, KEY)  # the endpoint set is read once, cached
    with CaptureQueriesContext(connection) as queries:
        first = TransactionService.consume_quota(user.pk, KEY, amount=2, idempotency_key="k1")
    assert first["success"] and first["remaining"] == 7
    assert len(queries.captured_queries) == 1, [q["sql"][:80] for q in queries.captured_queries]
    assert "INSERT INTO" in queries.captured_queries[0]["sql"]
    replay = TransactionService.consume_quota(user.pk, KEY, amount=2, idempotency_key="k1")
    assert replay["usage_id"] == first["usage_id"] and replay["remaining"] == 7
    assert "idempotent" in replay["message"]
    conflict = TransactionService.consume_quota(user.pk, KEY, amount=3, idempotency_key="k1")
    assert not conflict["success"] and conflict["error"] == IdempotencyConflict.code
    assert Transaction.objects.filter(direction="DEBIT").count() == 2
    assert IdempotencyKey.objects.filter(user=user, key="k1").count() == 1
    assert TransactionService.check_ledger() == []


@requires_postgres
def test_a_keyed_consume_one_batch_cannot_cover_leaves_no_key(user, make_product):
    """The statement claims the key, finds the first batch too small and aborts itself: the key
    is rolled back with it, the general path then spends across batches under the key — and a
    balance too low for any path leaves no key, so a retry after a top-up succeeds."""
    product = make_product(KEY)
    make_batch(user, product, 1, age_days=2)
    make_batch(user, product, 2, age_days=1)
    spread = TransactionService.consume_quota(user.pk, KEY, amount=3, idempotency_key="both")
    assert spread["success"] and spread["remaining"] == 0
    assert Transaction.objects.filter(direction="DEBIT").count() == 2
    short = TransactionService.consume_quota(user.pk, KEY, amount=1, idempotency_key="later")
    assert not short["success"] and short["error"] in (InsufficientFunds.code, QuotaExhausted.code)
    assert not IdempotencyKey.objects.filter(user=user, key="later").exists()
    make_batch(user, product, 5)
    retried = TransactionService.consume_quota(user.pk, KEY, amount=1, idempotency_key="later")
    assert retried["success"] and retried["remaining"] == 4
    assert TransactionService.check_ledger() == []


@requires_postgres
def test_a_first_batch_too_small_falls_back_without_a_trace(user, make_product):
    product = make_product(KEY)
    small = make_batch(user, product, 1, age_days=2)
    large = make_batch(user, product, 10, age_days=1)
    result = TransactionService.consume_quota(user.pk, KEY, amount=3)
    assert result["success"] and result["remaining"] == 8
    debits = Transaction.objects.filter(direction="DEBIT").order_by("id")
    assert [(d.quota_batch_id, d.amount) for d in debits] == [(small.pk, 1), (large.pk, 2)]
    assert TransactionService.check_ledger() == []


def race_for_one_wallet(user: Any, make_product: Any, keyed: bool,
                        consume: Callable[..., dict[str, Any]]) -> dict[str, set[str]]:
    """16 threads race ``consume(user_id, amount=…, idempotency_key=…)`` for a wallet whose first
    batch covers some consumes and not others (so the single-statement path, its fallback and
    the general path all run at once); asserts nothing is overspent or refused wrongly and a
    key is charged once. Returns the usage ids of each key (empty when not ``keyed``)."""
    product = make_product(KEY)
    for quantity, age in ((7, 4), (3, 3), (11, 2), (5, 1)):
        make_batch(user, product, quantity, age_days=age)
    amounts = itertools.cycle((1, 2, 3, 5))
    plan = [next(amounts) for _ in range(16)]

    def spend(index: int) -> dict[str, Any]:
        key = f"k{index % 12}" if keyed else None
        return consume(user.pk, amount=plan[index % 12 if keyed else index],
                       idempotency_key=key)

    results = run_in_threads(16, spend)
    assert not [r for r in results if isinstance(r, BaseException)], results
    spent = sum(Transaction.objects.filter(direction="DEBIT").values_list("amount", flat=True))
    assert spent <= 26
    assert spent + TransactionService.get_balance(user.pk, KEY) == 26
    assert {r.get("error") for r in results if not r["success"]} <= {"insufficient_funds",
                                                                     "quota_exhausted"}
    by_key: dict[str, set[str]] = {}
    if keyed:
        for index, result in enumerate(results):
            if result["success"]:
                by_key.setdefault(f"k{index % 12}", set()).add(result["usage_id"])
        assert all(len(ids) == 1 for ids in by_key.values())
    assert TransactionService.check_ledger() == []
    return by_key


@requires_postgres
@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed", "keyed"])
def test_threads_on_one_user_never_overspend(keyed, user, make_product):
    """Threads race for one wallet through the sync ``consume_quota``."""
    by_key = race_for_one_wallet(
        user, make_product, keyed,
        lambda user_id, **call: TransactionService.consume_quota(user_id, KEY, **call))
    if keyed:
        assert Transaction.objects.filter(direction="DEBIT").values(
            "metadata__idempotency_key").distinct().count() == len(by_key)


def test_sqlite_keeps_the_general_path() -> None:
    if is_postgres():
        assert connection.vendor in sql.FIRST_LOT_VENDORS
    else:
        assert connection.vendor not in sql.FIRST_LOT_VENDORS


@requires_postgres
def test_a_batch_moved_away_while_waiting_is_not_spent(user, make_user, make_product):
    """A merge moves the batch to another account while the consume waits for its row lock:
    the single statement re-checks the owner (as the general path's lock does) and spends
    nothing of it."""
    import threading
    import time

    from django.db import connections

    product = make_product(KEY)
    batch = make_batch(user, product, 10)
    other = make_user()
    moved = threading.Event()

    def move(index: int) -> Any:
        if index == 0:
            with transaction.atomic():
                QuotaBatch.objects.filter(pk=batch.pk).update(user_id=other.pk)
                Transaction.objects.filter(quota_batch=batch)._reassign_owner(other.pk)
                moved.set()
                time.sleep(0.5)  # the consume is now waiting for the batch's row lock
            return None
        moved.wait(5)
        try:
            return TransactionService.consume_quota(user.pk, KEY, amount=1)
        finally:
            connections.close_all()

    results = run_in_threads(2, move)
    assert results[1]["success"] is False and results[1]["error"] == "quota_exhausted"
    assert not Transaction.objects.filter(direction="DEBIT").exists()
    assert TransactionService.check_ledger() == []
    assert TransactionService.get_balance(other.pk, KEY) == 10
