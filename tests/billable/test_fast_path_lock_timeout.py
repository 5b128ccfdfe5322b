"""The fast paths' lock wait is bounded: a caller whose own open transaction (in another thread)
holds the row lock a fast statement needs gets the general path, in its transaction, instead of
a statement that waits for a transaction that waits for it.

``async_to_sync`` inside ``atomic()`` is that caller: the coroutine runs on a loop in another
thread, where :func:`billable.ledger.apool.available` cannot see the caller's ``atomic()``; the
general path it falls back to runs in the caller's thread (``sync_to_async``), inside it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction

from billable.ledger import apool
from billable.models import QuotaBatch, Reservation, Transaction
from billable.services import TransactionService
from billable.services.holds import HoldService
from tests.billable.ledger_support import make_batch
from tests.helpers import requires_postgres

pytestmark = [pytest.mark.django_db(transaction=True), requires_postgres]

#: The lock wait the tests configure (seconds), and the most any of them may take.
WAIT = 0.3
WATCHDOG = 15.0


@pytest.fixture
def funded(make_user: Callable[..., Any], make_product: Callable[..., Any]) -> Any:
    user = make_user()
    make_batch(user, make_product("CREDITS"), 10)
    return user


@pytest.fixture
def watchdog() -> Iterator[None]:
    """Cancel the pool's statements if a test ever waits forever again (a regression then
    fails on the elapsed time instead of hanging the suite)."""
    done = threading.Event()

    def cancel() -> None:
        from django.db import connections

        if done.wait(WATCHDOG):
            return
        while not done.wait(0.5):  # a cancelled statement is retried once: cancel until done
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                               "WHERE application_name = %s", [apool.APPLICATION_NAME])
        connections["default"].close()

    thread = threading.Thread(target=cancel, daemon=True)
    thread.start()
    yield
    done.set()
    thread.join()


def test_the_pool_connections_carry_the_lock_timeout(settings) -> None:
    settings.BILLABLE_FAST_PATH_LOCK_TIMEOUT = WAIT

    async def shown() -> str:
        async with (await apool.pool("default")).connection() as conn:
            cursor = await conn.execute("SHOW lock_timeout")
            row = await cursor.fetchone()
        await apool.aclose()
        return str(row[0])

    assert asyncio.run(shown()) == "300ms"
    settings.BILLABLE_FAST_PATH_LOCK_TIMEOUT = None
    assert asyncio.run(shown()) == "0"  # PostgreSQL's default: wait as long as it takes


def test_a_hold_inside_the_callers_locking_transaction_joins_it(settings, funded,
                                                               watchdog) -> None:
    settings.BILLABLE_FAST_PATH_LOCK_TIMEOUT = WAIT
    started = time.monotonic()
    with transaction.atomic():
        # the caller's transaction holds the batch row the fast hold must lock
        batch = QuotaBatch.objects.select_for_update().get(user=funded)
        placed = async_to_sync(HoldService.aplace)(funded.pk, "CREDITS", 2,
                                                   idempotency_key="inside-atomic")
        elapsed = time.monotonic() - started
        # the general path ran in this thread, inside this transaction: it sees the hold
        assert Reservation.objects.filter(pk=placed.reservation_id,
                                          state=Reservation.State.HELD).exists()
        assert connection.in_atomic_block
        batch.refresh_from_db()
        transaction.set_rollback(True)
    assert WAIT <= elapsed < WATCHDOG / 2
    # rolled back with the caller's transaction: nothing of it survived
    assert not Reservation.objects.filter(pk=placed.reservation_id).exists()
    assert QuotaBatch.objects.get(user=funded).remaining_quantity == 10


def test_an_async_consume_inside_the_callers_locking_transaction_joins_it(settings, funded,
                                                                         watchdog) -> None:
    settings.BILLABLE_FAST_PATH_LOCK_TIMEOUT = WAIT
    started = time.monotonic()
    with transaction.atomic():
        QuotaBatch.objects.select_for_update().get(user=funded)
        answer = async_to_sync(TransactionService.aconsume_quota)(
            funded.pk, "CREDITS", amount=3, idempotency_key="consume-inside-atomic")
        elapsed = time.monotonic() - started
        assert answer["success"] is True
        assert Transaction.objects.filter(user=funded).count() == 2  # the grant and this DEBIT
        transaction.set_rollback(True)
    assert WAIT <= elapsed < WATCHDOG / 2
    assert Transaction.objects.filter(user=funded).count() == 1
    assert QuotaBatch.objects.get(user=funded).remaining_quantity == 10
