"""Wallet mechanics shared by spending, holds, expiry and revocation (the engine's core).

Locking discipline: batch rows are always locked in primary-key order (``ORDER BY id FOR NO KEY
UPDATE``, or updates issued in that order) and the consumption order is applied afterwards in
Python; reservations are locked before batches. This is part of the one global lock order of
``docs/ledger.md`` (*Lock order*). Every batch change is a conditional ``UPDATE`` so a
concurrent change (possible on SQLite, which has no row locks) is detected, never overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from django.contrib.contenttypes.models import ContentType
from django.db.models import F
from django.utils import timezone

from billable.conf import billable_settings
from billable.exceptions import InsufficientFunds, QuotaExhausted, StaleBatch
from billable.ledger import sql
from billable.ledger.audit import emit_created
from billable.ledger.sql import LedgerRow, Lot
from billable.models import QuotaBatch, Transaction
from billable.models.base import uuid7

ACTIVE = QuotaBatch.State.ACTIVE
EXHAUSTED = QuotaBatch.State.EXHAUSTED
DEBIT = Transaction.Direction.DEBIT
CREDIT = Transaction.Direction.CREDIT


#: The message of a short balance (the published 0.2 text).
INSUFFICIENT = "Insufficient balance"


@dataclass
class Allocation:
    """How many units one operation takes from one batch (0 for period/unlimited products)."""

    batch: Lot
    take: int


def consumption_key(order: str | None = None) -> Callable[[Lot], tuple[Any, ...]]:
    """Sort key for the configured ``BILLABLE_CONSUMPTION_ORDER``."""
    order = order or billable_settings.CONSUMPTION_ORDER
    if order == "expiring_first":
        # Never-expiring batches last; equal flags mean both dates are set or both are None.
        return lambda b: (b.expires_at is None, b.expires_at, b.created_at, b.pk)
    return lambda batch: (batch.created_at, batch.pk)


def lock_spendable(*, user_id: Any, key: str, now: datetime) -> list[Lot]:
    """Lock the user's spendable batches of ``key`` (pk order) and return them in spend order."""
    lots = sql.lock_spendable_lots(user_id=user_id, key=key, now=now)
    if len(lots) > 1:
        lots.sort(key=consumption_key())
    return lots


def allocate(*, batches: Sequence[Lot], key: str, amount: int) -> list[Allocation]:
    """Split ``amount`` over ``batches`` in order.

    Raises :class:`QuotaExhausted` (no spendable batch) or :class:`InsufficientFunds`.
    """
    if not batches:
        raise QuotaExhausted(f"No active quota for {key}", product_key=key)
    if batches[0].is_entitlement:
        return [Allocation(batches[0], 0)]
    if sum(b.remaining_quantity for b in batches) < amount:
        raise InsufficientFunds(INSUFFICIENT, product_key=key)
    allocations: list[Allocation] = []
    needed = amount
    for batch in batches:
        if needed == 0:
            break
        take = min(batch.remaining_quantity, needed)
        allocations.append(Allocation(batch, take))
        needed -= take
    return allocations


def apply_allocations(allocations: Iterable[Allocation]) -> None:
    """Take the allocated units out of their batches (one conditional UPDATE per batch)."""
    for alloc in allocations:
        if alloc.take == 0:
            continue
        if not sql.take(lot=alloc.batch, amount=alloc.take):
            raise StaleBatch(str(alloc.batch.pk))
        alloc.batch.remaining_quantity -= alloc.take


def remaining_after(batches: Sequence[Lot]) -> int:
    """Spendable balance left in ``batches`` (after :func:`apply_allocations`)."""
    return sum(b.remaining_quantity for b in batches)


def debit_rows(
    *,
    user_id: Any,
    parts: Sequence[tuple[Any, int]],
    action_type: str,
    metadata: dict[str, Any],
    first_id: UUID | None = None,
    object_id: str | None = None,
    related: Any = None,
) -> list[LedgerRow]:
    """Insert one DEBIT per ``(batch_id, amount)`` in a single statement and return the rows."""
    content_type_id = None
    if related is not None:
        content_type_id = ContentType.objects.get_for_model(related).pk
        object_id = str(related.pk)
    now = timezone.now()
    rows = [
        LedgerRow(id=first_id if index == 0 and first_id is not None else uuid7(),
                  user_id=user_id, quota_batch_id=batch_id, amount=amount, direction=DEBIT,
                  action_type=action_type, content_type_id=content_type_id,
                  object_id=object_id, metadata=metadata, created_at=now)
        for index, (batch_id, amount) in enumerate(parts)
    ]
    sql.insert_ledger(rows)
    return rows


class Return(NamedTuple):
    """Held units going back to a batch (from a commit, a release or an expired hold)."""

    user_id: Any
    batch_id: Any
    amount: int
    reservation_id: str


def batch_order(pk: Any) -> UUID:
    """The lock-order key of a batch primary key (a ``UUID``, or a raw SQLite hex string)."""
    return pk if isinstance(pk, UUID) else UUID(str(pk))


def return_units(returns: Iterable[Return]) -> list[LedgerRow]:
    """Give held units back to their batches, updating the batches in primary-key order.

    The order is global over everything passed in (several holds released together lock their
    batches in one ascending sequence, like a consumption does), so a release never waits on a
    consumer in a cycle. A batch that expired or was revoked while the hold was open does not
    become spendable again: its returned units are written off with a DEBIT (``expiration`` /
    ``revocation``) so the ledger invariant keeps holding.
    """
    written_off: dict[tuple[Any, str, str], list[tuple[Any, int]]] = {}
    for item in sorted(returns, key=lambda r: batch_order(r.batch_id)):
        if item.amount == 0:
            continue
        updated = QuotaBatch.objects.filter(
            pk=item.batch_id, state__in=[ACTIVE, EXHAUSTED]
        ).update(remaining_quantity=F("remaining_quantity") + item.amount, state=ACTIVE)
        if not updated:
            state = QuotaBatch.objects.filter(pk=item.batch_id).values_list(
                "state", flat=True).get()
            action = "expiration" if state == QuotaBatch.State.EXPIRED else "revocation"
            written_off.setdefault((item.user_id, action, item.reservation_id), []).append(
                (item.batch_id, item.amount))
    rows: list[LedgerRow] = []
    for (user_id, action, reservation_id), parts in sorted(written_off.items(),
                                                         key=lambda kv: kv[0][1:]):
        rows += debit_rows(user_id=user_id, parts=parts, action_type=action,
                           metadata={"reservation_id": reservation_id})
    return rows


__all__ = [
    "Allocation",
    "Return",
    "allocate",
    "apply_allocations",
    "batch_order",
    "consumption_key",
    "debit_rows",
    "emit_created",
    "lock_spendable",
    "remaining_after",
    "return_units",
]
