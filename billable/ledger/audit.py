"""What the ledger reports: its signals (after commit) and the check of its invariant.

Signals are sent with ``sender=TransactionService`` (the published contract). The engine never
imports the facade: ``billable.services`` registers the facade class here when it is imported
(:func:`register_sender`), so the dependency points one way (services → ledger).

The invariant, used by ``billable_check_ledger`` and the tests:

For every batch: ``Σ CREDIT == initial_quantity`` and
``initial_quantity − Σ DEBIT − Σ held (items of HELD reservations) == remaining_quantity``; and
every ledger row belongs to the same user as its batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, IntegerField, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from billable.exceptions import describe
from billable.ledger.sql import LedgerRow
from billable.models import QuotaBatch, Reservation, ReservationItem, Transaction
from billable.signals import (
    outbox_wants,
    quota_consumed,
    send_on_commit,
    transaction_created,
    usage_counters,
    wanted,
)

_logger = logging.getLogger("billable.signals")


class _Ledger:
    """The sender of ledger signals until ``billable.services`` registers its facade."""


_SENDER: list[Any] = [_Ledger]


def register_sender(sender: Any) -> None:
    """Send ``transaction_created`` / ``quota_consumed`` with ``sender`` (the facade class)."""
    _SENDER[0] = sender


def emit_created(rows: Iterable[Transaction | LedgerRow], *, consumed: bool = False) -> None:
    """Queue ``transaction_created`` (and ``quota_consumed``) for after the commit.

    Model instances are built only when a receiver is connected or an event endpoint wants
    them (``billable.signals.wanted``).
    """
    sender = _SENDER[0]
    rows = list(rows)
    if consumed and usage_counters():
        transaction.on_commit(partial(_count, [(r.quota_batch_id, r.amount) for r in rows]))
    created = wanted(transaction_created, sender)
    used = consumed and wanted(quota_consumed, sender)
    if not (created or used):
        return
    for row in rows:
        model = row.to_model() if isinstance(row, LedgerRow) else row
        if created:
            send_on_commit(transaction_created, sender=sender, transaction=model)
        if used:
            send_on_commit(quota_consumed, sender=sender, usage=model)


async def awrites_events(*, consumed: bool, using: str) -> bool:
    """:func:`writes_events` from the event loop: the cached answer, or one thread hop per
    cache lifetime when the endpoint cache is stale (the fast paths' check)."""
    wanted = writes_events(consumed=consumed, using=using, cached_only=True)
    if wanted is None:
        wanted = await sync_to_async(writes_events)(consumed=consumed, using=using)
    return bool(wanted)


def writes_events(*, consumed: bool = False, using: str | None = None,
                  cached_only: bool = False) -> bool | None:
    """Whether :func:`emit_created` would write outbound events (then the rows and their events
    must commit together: the caller keeps them in one transaction; the gated fast path leaves
    them to the general path). ``cached_only``: no query, ``None`` when the endpoint cache
    cannot tell."""
    signals = (transaction_created, quota_consumed) if consumed else (transaction_created,)
    found = [outbox_wants(signal, using, cached_only=cached_only) for signal in signals]
    return True if True in found else None if None in found else False


async def asend_created(rows: Iterable[LedgerRow], *, consumed: bool, using: str) -> None:
    """Async twin of :func:`emit_created` for rows already committed: sends right away
    (``asend_robust``; a failing receiver is logged, as after a commit)."""
    sender = _SENDER[0]
    rows = list(rows)
    if consumed:
        for _sync, acount in usage_counters():
            for row in rows:
                try:
                    await acount(row.quota_batch_id, int(row.amount or 0))
                except Exception as exc:  # a counter never fails a charge that committed
                    _counter_failed(acount, exc)
    created = transaction_created.has_listeners(sender)
    used = consumed and quota_consumed.has_listeners(sender)
    if not (created or used):
        return
    for row in rows:
        model = row.to_model(using)
        if created:
            _log_failures(await transaction_created.asend_robust(sender=sender,
                                                                 transaction=model))
        if used:
            _log_failures(await quota_consumed.asend_robust(sender=sender, usage=model))


def _count(usages: list[tuple[Any, Any]]) -> None:
    """Run the sync consumption counters (after the commit of ``usages``)."""
    for count, _async in usage_counters():
        for batch_id, amount in usages:
            try:
                count(batch_id, int(amount or 0))
            except Exception as exc:  # a counter never fails a charge that committed
                _counter_failed(count, exc)


def _counter_failed(counter: Any, exc: Exception) -> None:
    """A usage counter that raised: a database that is unreachable (the counter's cached product
    lookup) is one warning line; anything else is logged with its traceback."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        _logger.warning("Usage counter %r skipped: %s", counter, describe(exc))
    else:
        _logger.exception("Usage counter %r failed", counter)


def _log_failures(results: Iterable[tuple[Any, Any]]) -> None:
    for receiver, result in results:
        if isinstance(result, Exception):
            logging.getLogger("billable.signals").error(
                "Signal receiver %r failed", receiver, exc_info=result)


def _sum_of(queryset: Any) -> Coalesce:
    subquery = Subquery(
        queryset.filter(quota_batch=OuterRef("pk")).order_by().values("quota_batch")
        .annotate(total=Sum("amount")).values("total")[:1],
        output_field=IntegerField(),
    )
    return Coalesce(subquery, Value(0), output_field=IntegerField())


def check_ledger(*, user_id: Any = None,
                 progress: Callable[[int], None] | None = None) -> list[str]:
    """Return the invariant violations (an empty list means the ledger is consistent).

    ``progress(1)`` is called for each batch checked.
    """
    batches = QuotaBatch.objects.select_related("product").annotate(
        credits=_sum_of(Transaction.objects.filter(direction=Transaction.Direction.CREDIT)),
        debits=_sum_of(Transaction.objects.filter(direction=Transaction.Direction.DEBIT)),
        held=_sum_of(ReservationItem.objects.filter(
            reservation__state=Reservation.State.HELD)),
    )
    strays = Transaction.objects.exclude(user_id=F("quota_batch__user_id"))
    if user_id is not None:
        batches = batches.filter(user_id=user_id)
        strays = strays.filter(user_id=user_id)
    problems: list[str] = []
    for batch in batches.order_by("id").iterator(chunk_size=2000):
        label = f"batch {batch.pk} ({batch.product.product_key}, user {batch.user_id})"
        if batch.credits != batch.initial_quantity:
            problems.append(
                f"{label}: credits {batch.credits} != initial {batch.initial_quantity}")
        expected = batch.initial_quantity - batch.debits - batch.held
        if expected != batch.remaining_quantity:
            problems.append(
                f"{label}: initial {batch.initial_quantity} - debits {batch.debits} - held "
                f"{batch.held} = {expected} != remaining {batch.remaining_quantity}")
        if progress is not None:
            progress(1)
    for row_id, owner, batch_id in strays.values_list("id", "user_id", "quota_batch_id"):
        problems.append(f"transaction {row_id} (user {owner}) is on another user's batch "
                        f"{batch_id}")
    return problems


def count_batches(*, user_id: Any = None) -> int:
    """How many batches :func:`check_ledger` looks at."""
    batches = QuotaBatch.objects.all()
    return (batches.filter(user_id=user_id) if user_id is not None else batches).count()


__all__ = ["asend_created", "check_ledger", "count_batches", "emit_created", "register_sender",
           "writes_events"]
