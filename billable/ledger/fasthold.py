"""The gated fast path: a hold, its settlement or its release as one statement each, on an
async driver.

A gated bot update holds its units, runs the handler, then settles the hold. The general path
(:mod:`billable.ledger.holds`) does that in two transactions of several round trips each, in a
worker thread. Here each transaction is **one statement** (``billable.ledger.sql``, *the gated
fast path*) on an autocommit connection of an async psycopg pool (:mod:`billable.ledger.apool`),
in the event loop. The rows written are the general path's, row for row.

Each function returns ``None`` when it did **nothing** and the caller must run the general
path: SQLite, the setting off, inside a caller's ``atomic()``, a serialization failure or
deadlock, a connection that broke twice; for the hold, a replayed key or no single batch
covering the amount (several batches, none, too few units: the general path raises the
errors); for the settlement, a hold that is not ``HELD``, is expired or has several items, or
an event endpoint that may want the ledger events (they must be written in the same
transaction) or a cold endpoint cache; for the release, a hold that is not ``HELD`` or has
several items, or a batch that expired or was revoked while the hold was open (the general
path writes those units off).

A statement either commits completely or not at all, so a fallback never doubles anything: a
hold whose reply was lost with its connection is retried; when the retry meets the key, the
hold's own id (chosen here) tells whether it is this call's hold — then it is placed and fresh,
and the handler runs — or another attempt's (the redelivery rules of the caller apply); a
settlement or a release is decided by the hold's state.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone

from billable.conf import billable_settings
from billable.ledger import apool, audit, sql, wallet
from billable.ledger.sql import LedgerRow
from billable.models import Reservation
from billable.models.base import uuid7
from billable.validation import fingerprint

#: Seconds a fast call waits for a pooled connection before it falls back.
CONNECT_TIMEOUT = apool.CONNECT_TIMEOUT

try:
    # optional dependency: psycopg 3 (the ``postgres`` extra); without it apool is never available
    from psycopg.types.json import Jsonb
except ImportError:  # pragma: no cover - SQLite-only installs
    Jsonb = None  # type: ignore[assignment,misc]


async def _statements(alias: str) -> sql.FastStatements:
    order = str(billable_settings.CONSUMPTION_ORDER)
    found = sql.fast_statements_cached(alias, order)
    if found is None:  # compiled once per alias and order (a select_for_update compile is sync)
        found = await sync_to_async(sql.fast_statements)(alias, order)
    return found


async def _run(alias: str, text: bytes, params: tuple[Any, ...]) -> list[tuple[Any, ...]] | None:
    """Run one statement (one transaction); ``None`` when the general path must run instead.

    :func:`billable.ledger.apool.run` (shared with the async consume): a broken connection is
    retried once on a fresh one — the statement either committed or did nothing, and every
    statement is safe to run again (the idempotency key / the hold's state decide); a hold
    that aborted itself (:data:`~billable.ledger.sql.FAST_HOLD_ABORT`) falls back quietly.
    """
    return await apool.run(alias, text, params, label="gated fast path",
                           aborts=(sql.FAST_HOLD_ABORT,))


@lru_cache(maxsize=1024)
def _fingerprint(key: str, amount: int, action_type: str) -> str:
    """The stored fingerprint of a hold request (``claim_key``'s), computed once per shape."""
    return fingerprint({"operation": "reserve", "product_key": key, "amount": amount,
                        "action_type": action_type})


async def aplace(*, user_id: Any, key: str, amount: int, ttl: timedelta, idempotency_key: str,
                 metadata: dict[str, Any], action_type: str, using: str) -> str | None:
    """Place a fresh hold in one statement; its id, or ``None`` (nothing written).

    With ``BILLABLE_GATED_HOLD_ASYNC_COMMIT`` (the default) the hold's transaction commits
    without waiting for its WAL flush: a hold lost in a crash charged nothing, and the settle's
    durable commit flushes the hold's WAL with its own (docs/guarantees.md)."""
    if not apool.available(using):
        return None
    statements = await _statements(using)
    rid, now = uuid7(), timezone.now()
    text = statements.hold if billable_settings.GATED_HOLD_ASYNC_COMMIT else statements.hold_durable
    # sql.HOLD_SLOTS, in order (the key row's result is built by the statement from the id)
    params = (user_id, idempotency_key, _fingerprint(key, amount, action_type), now, key, amount,
              rid, action_type, Jsonb(metadata), now + ttl)
    async def mine(rows: list[tuple[Any, ...]] | None) -> list[tuple[Any, ...]] | None:
        """After a broken connection: the retry met the key of *this* hold (its first attempt
        committed, the answer was lost) when a reservation with this call's fresh id exists —
        then it is placed, and fresh, not somebody's earlier attempt "in progress"."""
        if rows and rows[0][0] == 1 and rows[0][1] == 1:
            return rows
        found = await apool.run(using, _own_hold(using), (rid,), label="gated fast path")
        return [(1, 1)] if found else rows

    rows = await apool.run(using, text, params, label="gated fast path",
                           aborts=(sql.FAST_HOLD_ABORT,), after_break=mine)
    if not rows or rows[0][0] != 1 or rows[0][1] != 1:
        return None
    return str(rid)


@lru_cache(maxsize=8)
def _own_hold(alias: str) -> bytes:
    """``SELECT 1`` for the reservation of one id (the lost-answer check of :func:`aplace`)."""
    quote = connections[alias].ops.quote_name
    table, pk = Reservation._meta.db_table, str(Reservation._meta.pk.column)
    return sql.raw(f"SELECT 1 FROM {quote(table)} WHERE {quote(pk)} = %s")


async def acommit(*, reservation_id: UUID, using: str) -> tuple[LedgerRow, int] | None:
    """Settle all of a live one-item hold in one statement: its DEBIT row and the settled
    amount, or ``None`` (nothing written). The ledger signals are sent after it, like the
    general path's after its commit."""
    if not apool.available(using):
        return None
    if await audit.awrites_events(consumed=True, using=using):
        return None
    statements = await _statements(using)
    now = timezone.now()
    rows = await _run(using, statements.settle, (reservation_id, now))  # sql.SETTLE_SLOTS
    if not rows:
        return None
    user_id, batch_id, amount, action_type, metadata, held_amount = rows[0]
    row = LedgerRow(id=reservation_id, user_id=user_id, quota_batch_id=batch_id, amount=amount,
                    direction=wallet.DEBIT, action_type=action_type, content_type_id=None,
                    object_id=None, metadata=sql.json_object(metadata), created_at=now)
    await audit.asend_created([row], consumed=True, using=using)
    return row, int(held_amount)


async def arelease(*, reservation_id: UUID, using: str) -> bool | None:
    """Give a ``HELD`` one-item hold back in one statement (the handler raised): ``True``, or
    ``None`` (nothing written: the general path answers). Nothing is charged and no ledger
    row is written, as on the general path; the statement commits durably (the session's
    ``synchronous_commit``)."""
    if not apool.available(using):
        return None
    statements = await _statements(using)
    rows = await _run(using, statements.release, (reservation_id, timezone.now()))
    if not rows or rows[0][0] != 1:
        return None
    return True


__all__ = ["CONNECT_TIMEOUT", "acommit", "aplace", "arelease"]
