"""The gated fast path (hold and settle as one statement each on the async pool) against the
general path: the same rows, the same errors, the same guarantees, on real PostgreSQL
connections; and the fallback wherever the fast path does not apply."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from billable.exceptions import InsufficientFunds, QuotaExhausted
from billable.ledger import apool
from billable.ledger import holds as engine
from billable.models import IdempotencyKey, QuotaBatch, Reservation, ReservationItem, Transaction
from billable.services import TransactionService
from billable.signals import quota_consumed, transaction_created
from bot_kit import billing
from tests.billable.ledger_support import make_batch
from tests.helpers import requires_postgres, run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_cached_endpoints() -> None:
    """Forget endpoints an earlier test cached (a flush does not clear the cache)."""
    from billable.events.outbox import subscribed_types

    subscribed_types.clear()


@pytest.fixture
def credits(make_product: Callable[..., Any]) -> Any:
    return make_product("CREDITS")


@pytest.fixture
def general(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the general path's hold, commit and release calls (the fast path makes none)."""
    calls = {"place": 0, "commit": 0, "release": 0}
    place, commit, release = engine.place, engine.commit, engine.release

    def counted_place(**kwargs: Any) -> Any:
        calls["place"] += 1
        return place(**kwargs)

    def counted_commit(**kwargs: Any) -> Any:
        calls["commit"] += 1
        return commit(**kwargs)

    def counted_release(**kwargs: Any) -> Any:
        calls["release"] += 1
        return release(**kwargs)

    monkeypatch.setattr(engine, "place", counted_place)
    monkeypatch.setattr(engine, "commit", counted_commit)
    monkeypatch.setattr(engine, "release", counted_release)
    return calls


def gated(user_id: int, key: str, amount: int = 1, *, fail: bool = False) -> billing.Hold:
    """One gated update through the port, in its own event loop: hold → handler → settle."""

    async def update() -> billing.Hold:
        hold = await billing.ahold(user_id, "credits", amount, key=key, ttl=None,
                                   metadata={"source": "bot_kit", "bot": 7})
        if hold.run:
            if fail:
                await billing.arelease(hold.reservation_id)
            else:
                await billing.asettle(hold.reservation_id)
        return hold

    return asyncio.run(update())


def snapshot(user: Any) -> dict[str, Any]:
    """Every row a gated update writes for ``user``, ids and times left out (the hold id is
    kept where a row refers to it)."""
    holds = list(Reservation.objects.filter(user=user).order_by("id"))
    names = {str(h.pk): f"hold{i}" for i, h in enumerate(holds)}
    batches = {b.pk: f"batch{i}" for i, b in enumerate(
        QuotaBatch.objects.filter(user=user).order_by("created_at", "id"))}

    def meta(value: dict[str, Any]) -> dict[str, Any]:
        return {k: names.get(v, v) if k == "reservation_id" else v for k, v in value.items()}

    return {
        "holds": [(h.amount, h.committed_amount, h.state, h.action_type, h.metadata,
                   h.idempotency_key, h.product_id, h.settled_at is not None,
                   h.expires_at > h.created_at)
                  for h in holds],
        "items": sorted((names[str(i.reservation_id)], batches[i.quota_batch_id], i.amount)
                        for i in ReservationItem.objects.filter(reservation__user=user)),
        "batches": [(batches[b.pk], b.remaining_quantity, b.state)
                    for b in QuotaBatch.objects.filter(user=user).order_by("created_at", "id")],
        "ledger": sorted((names.get(str(t.pk), "own-id"), batches[t.quota_batch_id], t.amount,
                          t.direction, t.action_type, t.content_type_id, t.object_id,
                          sorted(meta(t.metadata).items()))
                         for t in Transaction.objects.filter(user=user)),
        "keys": sorted((k.key, k.operation, k.fingerprint,
                        sorted(meta(k.result).items())) for k in
                       IdempotencyKey.objects.filter(user=user)),
    }


def scenario(user: Any, product: Any, *, amount: int) -> None:
    make_batch(user, product, 3, age_days=2)
    make_batch(user, product, 10, age_days=1)
    gated(user.id, "tg:7:1:CREDITS", amount)            # settled
    gated(user.id, "tg:7:2:CREDITS", amount, fail=True)  # handler raised: released
    gated(user.id, "tg:7:1:CREDITS", amount)            # redelivery: not charged again


@requires_postgres
@pytest.mark.parametrize("amount", [1, 3])
def test_fast_path_writes_the_rows_of_the_general_path(make_user, credits, general, amount):
    fast, slow = make_user(), make_user()
    scenario(fast, credits, amount=amount)
    # only the redelivery took the general path
    assert general == {"place": 1, "commit": 0, "release": 0}
    with override_settings(BILLABLE_GATED_FAST_PATH=False):
        scenario(slow, credits, amount=amount)
    assert general == {"place": 1 + 3, "commit": 1, "release": 1}
    assert snapshot(fast) == snapshot(slow)
    assert [row[2] for row in snapshot(fast)["ledger"] if row[3] == "DEBIT"] == [amount]
    for user in (fast, slow):  # both settlements write the key the hold was placed with
        debit = Transaction.objects.get(user=user, direction="DEBIT")
        assert debit.metadata == {"source": "bot_kit", "bot": 7,
                                  "idempotency_key": "tg:7:1:CREDITS",
                                  "reservation_id": str(debit.pk)}
    assert TransactionService.check_ledger() == []


@requires_postgres
def test_period_product_holds_and_settles_like_the_general_path(make_user, make_product,
                                                                  general):
    period = make_product("CREDITS", product_type="period")
    fast, slow = make_user(), make_user()
    for user in (fast, slow):
        make_batch(user, period, 1, expires_in_days=30)
    gated(fast.id, "tg:7:1:CREDITS", 2)
    gated(fast.id, "tg:7:2:CREDITS", 2, fail=True)
    with override_settings(BILLABLE_GATED_FAST_PATH=False):
        gated(slow.id, "tg:7:1:CREDITS", 2)
        gated(slow.id, "tg:7:2:CREDITS", 2, fail=True)
    assert general == {"place": 2, "commit": 1, "release": 1}
    assert snapshot(fast) == snapshot(slow)
    for user in (fast, slow):
        debit = Transaction.objects.get(user=user, direction="DEBIT")
        assert debit.amount == 0 and debit.metadata["requested_amount"] == 2
        assert debit.metadata["idempotency_key"] == "tg:7:1:CREDITS"


@requires_postgres
@pytest.mark.parametrize("order", ["fifo", "expiring_first"])
def test_fast_hold_takes_the_batch_the_consumption_order_names(make_user, credits, general,
                                                               order, settings):
    settings.BILLABLE_CONSUMPTION_ORDER = order
    user = make_user()
    old = make_batch(user, credits, 5, age_days=3)
    soon = make_batch(user, credits, 5, age_days=1, expires_in_days=2)
    gated(user.id, "tg:7:1:CREDITS", 2)
    assert general["place"] == 0
    taken = soon if order == "expiring_first" else old
    taken.refresh_from_db()
    assert taken.remaining_quantity == 3


@requires_postgres
def test_a_raising_handler_charges_nothing(user, credits, general):
    make_batch(user, credits, 5)
    hold = gated(user.id, "tg:7:9:CREDITS", 2, fail=True)
    assert hold.run and general == {"place": 0, "commit": 0, "release": 0}
    assert TransactionService.get_balance(user.id, "credits") == 5
    assert not Transaction.objects.filter(direction="DEBIT").exists()
    assert Reservation.objects.get().state == Reservation.State.RELEASED
    assert TransactionService.check_ledger() == []


def hold_only(user_id: int, key: str, amount: int = 1) -> billing.Hold:
    """A hold through the port, in its own event loop (nothing settled or released)."""
    return asyncio.run(billing.ahold(user_id, "credits", amount, key=key))


def release(reservation_id: str | None) -> bool:
    """``billing.arelease`` in its own event loop."""
    return asyncio.run(billing.arelease(reservation_id))


@requires_postgres
def test_a_fast_release_gives_an_exhausted_batch_back(user, credits, general):
    batch = make_batch(user, credits, 2)
    hold = hold_only(user.id, "tg:7:50:CREDITS", 2)
    batch.refresh_from_db()
    assert batch.state == QuotaBatch.State.EXHAUSTED
    assert release(hold.reservation_id) is True
    assert general == {"place": 0, "commit": 0, "release": 0}
    batch.refresh_from_db()
    assert (batch.remaining_quantity, batch.state) == (2, QuotaBatch.State.ACTIVE)
    held = Reservation.objects.get()
    assert (held.state, held.committed_amount) == (Reservation.State.RELEASED, 0)
    assert held.settled_at is not None
    assert not Transaction.objects.filter(direction="DEBIT").exists()
    assert TransactionService.check_ledger() == []


@requires_postgres
def test_a_release_after_its_batch_expired_falls_back_and_writes_the_units_off(
        user, credits, general):
    batch = make_batch(user, credits, 5)
    hold = hold_only(user.id, "tg:7:51:CREDITS", 2)
    QuotaBatch.objects.filter(pk=batch.pk).update(state=QuotaBatch.State.EXPIRED)
    assert release(hold.reservation_id) is True
    assert general == {"place": 0, "commit": 0, "release": 1}  # the fast release aborted
    assert Reservation.objects.get().state == Reservation.State.RELEASED
    write_off = Transaction.objects.get(direction="DEBIT")
    assert (write_off.action_type, write_off.amount) == ("expiration", 2)
    batch.refresh_from_db()
    assert batch.remaining_quantity == 3
    assert TransactionService.check_ledger() == []


@requires_postgres
def test_releasing_a_settled_or_released_hold_answers_like_the_general_path(user, credits,
                                                                           general):
    make_batch(user, credits, 5)
    charged = gated(user.id, "tg:7:52:CREDITS")
    assert release(charged.reservation_id) is False  # committed: the general path answers
    given = hold_only(user.id, "tg:7:53:CREDITS")
    assert release(given.reservation_id) is True  # fast
    assert release(given.reservation_id) is True  # already released: the general path
    assert general == {"place": 0, "commit": 0, "release": 2}
    assert TransactionService.get_balance(user.id, "credits") == 4
    assert Transaction.objects.filter(direction="DEBIT").count() == 1
    assert TransactionService.check_ledger() == []


@requires_postgres
def test_a_hold_spanning_batches_is_released_by_the_general_path(user, credits, general):
    make_batch(user, credits, 3, age_days=2)
    make_batch(user, credits, 3, age_days=1)
    hold = hold_only(user.id, "tg:7:54:CREDITS", 5)
    assert release(hold.reservation_id) is True
    assert general == {"place": 1, "commit": 0, "release": 1}
    assert TransactionService.get_balance(user.id, "credits") == 6
    assert not Transaction.objects.filter(direction="DEBIT").exists()
    assert TransactionService.check_ledger() == []


@requires_postgres
def test_a_redelivered_update_is_charged_once(user, credits):
    make_batch(user, credits, 5)
    first = gated(user.id, "tg:7:3:CREDITS")
    again = gated(user.id, "tg:7:3:CREDITS")
    assert first.run and not again.run and again.reason == "already_charged"
    assert TransactionService.get_balance(user.id, "credits") == 4
    assert Transaction.objects.filter(direction="DEBIT").count() == 1


@requires_postgres
def test_concurrent_redeliveries_run_and_charge_once(user, credits):
    make_batch(user, credits, 50)
    results = run_in_threads(6, lambda _i: gated(user.id, "tg:7:4:CREDITS"))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(1 for r in results if r.run) == 1
    assert TransactionService.get_balance(user.id, "credits") == 49
    assert Transaction.objects.filter(direction="DEBIT").count() == 1
    assert IdempotencyKey.objects.count() == 1
    assert TransactionService.check_ledger() == []


@requires_postgres
def test_concurrent_updates_of_one_user_never_overspend(user, credits):
    make_batch(user, credits, 4)
    results = run_in_threads(8, lambda i: gated(user.id, f"tg:7:{100 + i}:CREDITS"))
    charged = [r for r in results if isinstance(r, billing.Hold) and r.run]
    refused = [r for r in results if isinstance(r, (InsufficientFunds, QuotaExhausted))]
    assert len(charged) == 4 and len(refused) == 4, results
    assert TransactionService.get_balance(user.id, "credits") == 0
    assert TransactionService.check_ledger() == []


@requires_postgres
@pytest.mark.parametrize("fast", [True, False])
def test_a_short_balance_raises_what_the_general_path_raises(user, credits, settings, fast):
    settings.BILLABLE_GATED_FAST_PATH = fast
    with pytest.raises(QuotaExhausted):
        gated(user.id, "tg:7:5:CREDITS")
    make_batch(user, credits, 2)
    with pytest.raises(InsufficientFunds):
        gated(user.id, "tg:7:6:CREDITS", 3)
    assert not IdempotencyKey.objects.exists()  # the aborted fast hold left no key behind
    assert not Reservation.objects.exists()


@requires_postgres
def test_an_amount_spanning_batches_falls_back(user, credits, general):
    make_batch(user, credits, 3, age_days=2)
    make_batch(user, credits, 3, age_days=1)
    assert gated(user.id, "tg:7:7:CREDITS", 5).run
    assert general == {"place": 1, "commit": 1, "release": 0}
    assert ReservationItem.objects.count() == 2
    assert Transaction.objects.filter(direction="DEBIT").count() == 2
    assert TransactionService.get_balance(user.id, "credits") == 1
    assert TransactionService.check_ledger() == []


@requires_postgres
def test_the_setting_off_takes_the_general_path(user, credits, general, settings):
    settings.BILLABLE_GATED_FAST_PATH = False
    make_batch(user, credits, 3)
    assert gated(user.id, "tg:7:8:CREDITS").run
    assert general == {"place": 1, "commit": 1, "release": 0}


def test_sqlite_or_not_the_port_behaves_the_same(user, credits):
    make_batch(user, credits, 3)
    assert gated(user.id, "tg:7:8:CREDITS").run
    assert not gated(user.id, "tg:7:8:CREDITS").run
    assert TransactionService.get_balance(user.id, "credits") == 2
    assert apool.available("default") is (connection.vendor == "postgresql")


@requires_postgres
def test_a_settle_with_signal_receivers_sends_them_after_the_statement(user, credits,
                                                                       general):
    make_batch(user, credits, 3)
    seen: list[tuple[str, Any]] = []

    def created(sender: Any, transaction: Any, **_: Any) -> None:
        seen.append(("created", transaction))

    def consumed(sender: Any, usage: Any, **_: Any) -> None:
        seen.append(("consumed", usage))

    transaction_created.connect(created)
    quota_consumed.connect(consumed)
    try:
        gated(user.id, "tg:7:10:CREDITS")
    finally:
        transaction_created.disconnect(created)
        quota_consumed.disconnect(consumed)
    assert general == {"place": 0, "commit": 0, "release": 0}
    debit = Transaction.objects.get(direction="DEBIT")
    assert [(name, row.pk, row.amount, row.metadata) for name, row in seen] == [
        (name, debit.pk, 1, debit.metadata) for name in ("created", "consumed")]


@requires_postgres
def test_an_event_endpoint_sends_the_settle_to_the_general_path(user, credits, general):
    from billable.events.outbox import subscribed_types
    from billable.models import EventEndpoint

    EventEndpoint.objects.create(url="https://example.com/hook", event_types=["*"])
    subscribed_types.clear()
    make_batch(user, credits, 3)
    gated(user.id, "tg:7:11:CREDITS")  # a cold cache: general settle (it fills the cache)
    gated(user.id, "tg:7:12:CREDITS")  # the cache says an endpoint wants them: general again
    assert general == {"place": 0, "commit": 2, "release": 0}


def _terminate_pool_connections() -> int:
    """Kill the pool's backends (and only those) from a Django connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                       " WHERE datname = current_database() AND application_name = %s",
                       [apool.APPLICATION_NAME])
        killed = int(cursor.fetchone()[0])
        for _ in range(100):  # the signal is asynchronous: wait until the backends are gone
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                           [apool.APPLICATION_NAME])
            if not cursor.fetchone()[0]:
                break
            time.sleep(0.02)
    connection.close()  # this runs in a worker thread: leave no session behind
    return killed


@requires_postgres
def test_the_pool_survives_terminated_connections_and_never_double_charges(user, credits,
                                                                           general):
    make_batch(user, credits, 10)

    async def updates() -> list[billing.Hold]:
        done = []
        for n in range(3):  # each statement meets a dead connection first
            hold = await billing.ahold(user.id, "credits", 1, key=f"tg:7:{20 + n}:CREDITS")
            killed.append(await asyncio.to_thread(_terminate_pool_connections))
            await billing.asettle(hold.reservation_id)  # after the hold's connection died
            killed.append(await asyncio.to_thread(_terminate_pool_connections))
            done.append(hold)
        return done

    killed: list[int] = []
    holds = asyncio.run(updates())
    assert all(h.run for h in holds) and all(killed), killed
    # each statement retried on a fresh connection
    assert general == {"place": 0, "commit": 0, "release": 0}
    assert TransactionService.get_balance(user.id, "credits") == 7
    assert Transaction.objects.filter(direction="DEBIT").count() == 3
    assert set(Reservation.objects.values_list("state", flat=True)) == {"COMMITTED"}
    assert TransactionService.check_ledger() == []


@requires_postgres
def test_pools_are_per_loop_and_closed_with_the_loop(user, credits):
    make_batch(user, credits, 10)
    seen: list[Any] = []

    async def one(n: int) -> None:
        await billing.ahold(user.id, "credits", 1, key=f"tg:7:{40 + n}:CREDITS")
        seen.append(await apool.pool("default"))

    asyncio.run(one(1))
    asyncio.run(one(2))
    assert seen[0] is not seen[1]
    assert all(p.closed for p in seen)


@pytest.fixture
def commit_modes() -> Any:
    """Records ``synchronous_commit`` as each hold and ledger row is written (AFTER ROW
    triggers fire at the end of the statement, inside its transaction: the value its commit
    uses). Yields a reader of ``[(table, setting), ...]`` in write order."""
    tables = {"hold": Reservation._meta.db_table, "ledger": Transaction._meta.db_table}
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE test_commit_modes (n serial, tbl text, setting text)")
        cursor.execute(
            "CREATE FUNCTION test_record_commit_mode() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN INSERT INTO test_commit_modes (tbl, setting)"
            " VALUES (TG_ARGV[0], current_setting('synchronous_commit')); RETURN NULL; END $$")
        for name, table in tables.items():
            cursor.execute(f"CREATE TRIGGER test_commit_mode_{name} AFTER INSERT ON {table}"
                           f" FOR EACH ROW EXECUTE FUNCTION test_record_commit_mode('{name}')")

    def read() -> list[tuple[str, str]]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT tbl, setting FROM test_commit_modes ORDER BY n")
            return [(str(t), str(s)) for t, s in cursor.fetchall()]

    try:
        yield read
    finally:
        with connection.cursor() as cursor:
            for name, table in tables.items():
                cursor.execute(f"DROP TRIGGER test_commit_mode_{name} ON {table}")
            cursor.execute("DROP FUNCTION test_record_commit_mode()")
            cursor.execute("DROP TABLE test_commit_modes")


@requires_postgres
@pytest.mark.parametrize("deferred", [True, False])
def test_the_hold_commits_without_waiting_for_the_disk_and_the_charge_waits(
        user, credits, general, commit_modes, settings, deferred):
    """The hold's transaction alone runs with ``synchronous_commit = off``; the settle on the
    same pooled connection (one connection: the setting must not outlive the hold's
    transaction) commits durably."""
    settings.BILLABLE_GATED_POOL_SIZE = 1
    settings.BILLABLE_GATED_HOLD_ASYNC_COMMIT = deferred
    make_batch(user, credits, 5)
    before = len(commit_modes())  # the batch's CREDIT row
    gated(user.id, "tg:7:30:CREDITS")
    gated(user.id, "tg:7:31:CREDITS")
    assert general == {"place": 0, "commit": 0, "release": 0}
    hold = "off" if deferred else "on"
    assert commit_modes()[before:] == [("hold", hold), ("ledger", "on")] * 2
    assert TransactionService.get_balance(user.id, "credits") == 3


@requires_postgres
def test_a_fast_charge_is_counted_in_the_loop_without_a_thread_hop(user, credits, general,
                                                                 monkeypatch):
    """Metrics count a fast charge through the engine's usage counter: the batch's product is
    looked up once (a worker thread), later charges count in the event loop; no
    ``quota_consumed`` receiver (and so no model and no ``asend`` thread hop) is needed."""
    pytest.importorskip("prometheus_client")
    from asgiref import sync

    from billable.metrics import instruments, receivers

    receivers.connect()
    assert not quota_consumed.has_listeners()
    make_batch(user, credits, 5)
    counted: list[tuple[Any, int]] = []
    monkeypatch.setattr(instruments, "record_consume",
                        lambda product, units: counted.append((product, units)))
    hops = 0
    real = sync.SyncToAsync.__call__

    async def counted_hop(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__call__", counted_hop)
    gated(user.id, "tg:7:40:CREDITS")
    first = hops
    gated(user.id, "tg:7:41:CREDITS", 2)
    assert general == {"place": 0, "commit": 0, "release": 0}
    assert counted == [("CREDITS", 1), ("CREDITS", 2)]
    assert hops == first  # the second charge: no thread hop at all


@pytest.mark.django_db(transaction=False)
def test_statements_reach_the_driver_numbered_once() -> None:
    """``sql.raw``: a named value used twice is one ``$n`` (sent once), positional ``%s`` are
    numbered in order, ``%%`` is a literal percent; constants written into the text are only
    ints and identifier-like strings of our own statements."""
    from billable.ledger import sql

    assert sql.raw("a = %(x)s AND b = %(y)s OR c = %(x)s", ("y", "x")) == (
        b"a = $2 AND b = $1 OR c = $2")
    assert sql.raw("a = %s AND b LIKE '%%z' AND c = %s") == b"a = $1 AND b LIKE '%z' AND c = $2"
    assert sql._literal(0) == "0"
    assert sql._literal("ACTIVE") == "'ACTIVE'"
    for unsafe in ("x' OR '1", True, 1.5, None):
        with pytest.raises(RuntimeError):
            sql._literal(unsafe)
