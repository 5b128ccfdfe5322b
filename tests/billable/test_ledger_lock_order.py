"""Expiry (of holds and of batches) racing consumers, holds and merges on PostgreSQL.

Every write path takes its locks in one global order (``billable.ledger.locks``); this test
drives the paths that used to take batch locks in another order — releasing expired holds hold
by hold, while consumers lock batches in ascending id — against each other with real threads
and connections. The batches are arranged so that the consumption order is the reverse of the
id order, which makes any out-of-order locking collide. Afterwards: no caller saw a raw
database error, PostgreSQL counted no deadlock, and the ledger invariant holds.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from billable.exceptions import BillableError, DatabaseBusy
from billable.models import QuotaBatch, Reservation, Transaction
from billable.services import CustomerService, TransactionService
from tests.billable.ledger_support import make_batch
from tests.helpers import requires_postgres

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]
T = TransactionService
USERS = 4
BATCHES = 12
ROUNDS = 2


def _deadlocks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def _wallets(make_user: Callable[..., Any], product: Any) -> list[Any]:
    """Users whose batches are spent in descending id order (oldest ``created_at`` = newest id)."""
    users = [make_user() for _ in range(USERS)]
    for user in users:
        for age in range(BATCHES):
            make_batch(user, product, 10, age_days=age, expires_in_days=30)
    return users


def _expired_holds(users: list[Any]) -> None:
    """One expired hold of 4 units on every batch, the holds' ids rising as the batch ids fall.

    A hold of 6 fills the rest of each batch so the next hold lands on the next batch; the
    fillers are released afterwards, so every batch stays spendable (6 units) and consumers
    lock all of them. Giving the expired holds back hold by hold would lock the batches in
    descending id order — against the consumers' ascending order.
    """
    for user in users:
        fillers = []
        for _ in range(BATCHES):
            T.reserve_quota(user.id, "CREDITS", 4)
            fillers.append(T.reserve_quota(user.id, "CREDITS", 6))
        for rid in fillers:
            T.release_reservation(rid)
    Reservation.objects.filter(state="HELD").update(
        expires_at=timezone.now() - timedelta(seconds=1))


def _run(workers: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(workers))

    def run(work: Callable[[], None]) -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def _consumers(users: list[Any], seed: int) -> list[Callable[[], None]]:
    rng = random.Random(seed)

    def consumer() -> None:
        for _ in range(30):
            T.consume_quota(rng.choice(users).id, "CREDITS", amount=rng.randint(3, 12))

    return [consumer] * 6


def _calls(users: list[Any], seed: int) -> list[Callable[[], None]]:
    rng = random.Random(seed)

    def consumer() -> None:
        for _ in range(25):
            T.consume_quota(rng.choice(users).id, "CREDITS", amount=rng.randint(3, 12))

    def holder() -> None:
        for _ in range(10):
            user = rng.choice(users)
            try:
                rid = T.reserve_quota(user.id, "CREDITS", rng.randint(4, 11), ttl=0.01)
            except BillableError:
                continue
            T.commit_reservation(rid, 1) if rng.random() < 0.5 else None

    def expirer() -> None:
        for _ in range(12):
            T.expire_batches()

    def clock() -> None:
        for _ in range(30):
            pk = QuotaBatch.objects.filter(state="ACTIVE").order_by("?").values_list(
                "pk", flat=True).first()
            QuotaBatch.objects.filter(pk=pk).update(expires_at=timezone.now())

    def merger() -> None:
        for target, source in zip(users[::2], users[1::2], strict=True):
            CustomerService.merge_customers(target.id, source.id)

    return [consumer] * 6 + [holder, holder, expirer, expirer, clock, merger]


def test_releasing_expired_holds_never_deadlocks_with_consumers(make_user, make_product):
    """Issue 12, item 3: expired holds used to give their units back hold by hold."""
    product = make_product("CREDITS")
    before = _deadlocks()
    for round_ in range(ROUNDS):
        users = _wallets(make_user, product)
        _expired_holds(users)
        errors = _run(_consumers(users, seed=round_) + [T.expire_batches] * 3)
        assert [e for e in errors if not isinstance(e, BillableError)] == []
        assert not [e for e in errors if isinstance(e, DatabaseBusy)]
    time.sleep(1.0)
    assert _deadlocks() == before
    assert T.check_ledger() == []


def test_expiry_races_consumers_holds_and_merges_without_raw_errors(make_user, make_product):
    product = make_product("CREDITS")
    before = _deadlocks()
    for round_ in range(ROUNDS):
        users = _wallets(make_user, product)
        _expired_holds(users)
        errors = _run(_calls(users, seed=round_))
        assert [e for e in errors if not isinstance(e, BillableError)] == []
        assert not [e for e in errors if isinstance(e, DatabaseBusy)]
    time.sleep(1.0)  # backends flush their statistics when they exit
    assert _deadlocks() == before
    T.expire_batches()
    assert T.check_ledger() == []
    credited = sum(Transaction.objects.filter(direction="CREDIT").values_list("amount",
                                                                              flat=True))
    debited = sum(Transaction.objects.filter(direction="DEBIT").values_list("amount", flat=True))
    held = sum(Reservation.objects.filter(state="HELD").values_list("amount", flat=True))
    remaining = sum(QuotaBatch.objects.values_list("remaining_quantity", flat=True))
    assert credited == debited + held + remaining
