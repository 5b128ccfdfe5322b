"""The async consume: a consume the first batch covers, as one statement on the async pool.

``consume`` (:mod:`billable.ledger.spend`) runs in a worker thread on the ORM's connection. On
PostgreSQL its common case — the first spendable batch in consumption order covers the amount
— is already one statement (``sql.take_first``). Here that statement runs on an autocommit
connection of the async psycopg pool (:mod:`billable.ledger.apool`, shared with the gated fast
path), in the event loop: no thread hop, no per-request Django connection. With an
idempotency key the same statement claims the key first, in the same transaction (the general
path's key row, the general path's lock order: key, then batch). The rows written are the
general path's, row for row (``tests/billable/test_fast_consume.py``).

:func:`aconsume` returns ``None`` when it did **nothing** and the caller must run the general
path: SQLite, ``BILLABLE_ASYNC_CONSUME`` or ``BILLABLE_GATED_FAST_PATH`` off, inside a
caller's ``atomic()``, an event endpoint that may want the ledger events (they must be written
in the same transaction), a replayed or conflicting key, no single batch covering the amount
(several batches, none, too few units, a period / unlimited product: the general path gives
the exact answers and errors), a serialization failure or deadlock, a keyed statement whose
connection broke twice. A statement either commits completely or not at all, so a fallback
never doubles anything: a keyed consume whose reply was lost with its connection is replayed
by its key. A consume **without** a key has no key to replay it: after a broken connection it
is retried with the same DEBIT id (the primary key refuses a second one; meeting it means the
lost attempt committed, and its answer is rebuilt from that row), and if the retry breaks
too it raises ``DatabaseUnavailable`` rather than letting the general path write a second DEBIT
(``tests/faults3/test_lost_replies.py``).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import Sum
from django.utils import timezone

from billable.conf import billable_settings
from billable.ledger import apool, audit, sql, wallet
from billable.ledger.idempotency import consume_key_row
from billable.ledger.sql import LedgerRow
from billable.models import QuotaBatch, Transaction
from billable.models.base import uuid7


async def _plan(alias: str) -> sql.FirstLot:
    order = str(billable_settings.CONSUMPTION_ORDER)
    found = sql.first_lot_cached(alias, order)
    if found is None:  # compiled once per alias and order (compiling opens a transaction)
        found = await sync_to_async(sql.first_lot)(alias, order)
    return found


def available(using: str) -> bool:
    """Whether the async consume may run on ``using`` (no I/O): PostgreSQL with the async pool
    (:func:`billable.ledger.apool.available`) and ``BILLABLE_ASYNC_CONSUME`` on."""
    return bool(billable_settings.ASYNC_CONSUME) and apool.available(using)


async def aconsume(*, user_id: Any, key: str, amount: int, action_type: str,
                   action_id: str | None, idempotency_key: str | None,
                   metadata: dict[str, Any], using: str) -> dict[str, Any] | None:
    """Debit ``amount`` of ``key`` from the user's first spendable batch in one statement: the
    success dict of :func:`billable.ledger.spend.consume`, or ``None`` (nothing written). The
    ledger signals and usage counters are sent after it, like the general path's after its
    commit."""
    if not available(using):
        return None
    if await audit.awrites_events(consumed=True, using=using):
        return None
    plan = await _plan(using)
    usage_id, now = uuid7(), timezone.now()
    debit_meta = {**metadata, "idempotency_key": idempotency_key}
    row = LedgerRow(id=usage_id, user_id=user_id, quota_batch_id=None, amount=amount,
                    direction=wallet.DEBIT, action_type=action_type, content_type_id=None,
                    object_id=action_id, metadata=debit_meta, created_at=now)
    params = sql.first_lot_params(plan, row=row, key=key, now=now, using=using)
    text = plan.unkeyed
    if idempotency_key:
        # The general path's key row (claim_key, operation "consume"), claimed in the statement.
        params = [*consume_key_row(user_id=user_id, key=idempotency_key, product_key=key,
                                   amount=amount, action_type=action_type, action_id=action_id,
                                   usage_id=usage_id, metadata=debit_meta, now=now,
                                   using=using), *params]
        text = plan.keyed
    try:
        # Without a key the DEBIT's id (chosen here) is the only witness of an attempt whose
        # answer was lost with its connection: ``once`` retries with that id and never lets the
        # general path write a second DEBIT under a new one.
        rows = await apool.run(using, text, params, label="async consume",
                               aborts=(sql.FAST_CONSUME_ABORT,),
                               once=None if idempotency_key else Transaction._meta.db_table)
    except apool.AppliedBefore:
        rows = [await sync_to_async(_applied)(usage_id, user_id=user_id, key=key, using=using)]
    if not rows or rows[0][0] is None:
        return None
    batch_id, left = rows[0]
    row.quota_batch_id = batch_id
    await audit.asend_created([row], consumed=True, using=using)
    return {"success": True, "message": "Quota consumed", "usage_id": str(usage_id),
            "remaining": int(left), "metadata": debit_meta}


def _applied(usage_id: Any, *, user_id: Any, key: str, using: str) -> tuple[Any, int]:
    """The batch of the committed DEBIT ``usage_id`` and the balance left now (what a keyed
    replay answers: ``remaining`` is the current balance)."""
    batch_id = (Transaction.objects.using(using).filter(pk=usage_id)
                .values_list("quota_batch_id", flat=True).get())
    left = (QuotaBatch.objects.using(using).spendable()
            .filter(user_id=user_id, product__product_key=key)
            .aggregate(total=Sum("remaining_quantity"))["total"])
    return batch_id, int(left or 0)


__all__ = ["aconsume", "available"]
