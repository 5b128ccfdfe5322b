"""The one retry-on-conflict helper: retry transient database conflicts, then a clear error.

Every write path takes its row locks in one global order (see ``docs/ledger.md``, *Lock
order*), so deadlocks are not expected. Should the database still abort a transaction as a
deadlock victim or a serialization failure (PostgreSQL SQLSTATE ``40P01`` / ``40001``), or
SQLite give up waiting for its write lock ("database is locked"), :func:`retrying` runs the
whole operation again — it was rolled back completely, so nothing is applied twice — and after
:data:`ATTEMPTS` tries raises :class:`~billable.exceptions.DatabaseBusy`. Callers never see a raw
database error for these conditions.

Inside a caller's own transaction the operation cannot be retried (the caller's earlier work is
part of the same transaction): the conflict is raised as ``DatabaseBusy`` straight away. When
that caller is itself a :func:`retrying` operation (a gift claim, a promo redemption or a
trial granting through ``grant_offer``) and opened the transaction, it retries the whole
operation instead: such a ``DatabaseBusy`` is marked ``transient``. Before, the first conflict
met by the inner call ended the outer one with ``DatabaseBusy``.

A statement that hit PostgreSQL's ``lock_timeout`` or ``statement_timeout`` (SQLSTATE ``55P03`` /
``57014``) is not retried — it already waited as long as the server allows — and becomes
``DatabaseBusy`` at once. :func:`outage` names the billable error for every database failure
that is not the caller's fault (those two, and a broken connection: ``DatabaseUnavailable``);
the REST API answers them ``503`` instead of ``500``.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections

from billable.exceptions import (
    BillableError,
    DatabaseBusy,
    DatabaseUnavailable,
    RetryTransaction,
    StaleBatch,
)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: How many times an operation runs before ``DatabaseBusy`` is raised.
ATTEMPTS = 5
#: PostgreSQL: deadlock_detected, serialization_failure.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})
#: PostgreSQL: lock_not_available (``lock_timeout``), query_canceled (``statement_timeout``).
#: The statement waited as long as the server allows and its transaction is rolled back; it is
#: not run again here (another wait of the same length would rarely end differently).
TIMEOUT_SQLSTATES = frozenset({"55P03", "57014"})
_SQLITE_BUSY = ("database is locked", "database table is locked")


def is_transient(exc: BaseException) -> bool:
    """True for a deadlock, a serialization failure or SQLite's "database is locked"."""
    if isinstance(exc, RetryTransaction):
        return True
    if isinstance(exc, DatabaseBusy):  # raised by a nested retrying call, see _busy
        return exc.transient
    if not isinstance(exc, DatabaseError):
        return False
    cause = exc.__cause__
    if getattr(cause, "sqlstate", None) in TRANSIENT_SQLSTATES:
        return True
    if getattr(cause, "pgcode", None) in TRANSIENT_SQLSTATES:
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _SQLITE_BUSY)


def _sqlstate(exc: BaseException) -> str | None:
    cause = exc.__cause__
    state = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return str(state) if state else None


def is_timeout(exc: BaseException) -> bool:
    """True for PostgreSQL's ``lock_timeout`` or ``statement_timeout`` (or a cancel)."""
    return isinstance(exc, DatabaseError) and _sqlstate(exc) in TIMEOUT_SQLSTATES


def outage(exc: BaseException) -> BillableError | None:
    """The billable error for a database failure that says nothing about the request, or
    ``None`` when ``exc`` is something else (a bug, a constraint, bad data).

    * a deadlock, a serialization failure, a lock or statement timeout: :class:`DatabaseBusy`
      (rolled back; repeat);
    * a broken or unobtainable connection (``OperationalError`` / ``InterfaceError``: a
      terminated backend, a restart, the pool's timeout): :class:`DatabaseUnavailable`
      (rolled back unless it broke during the commit; repeat with the same idempotency key).
    """
    if isinstance(exc, (DatabaseBusy, DatabaseUnavailable)):
        return exc
    if is_transient(exc) or is_timeout(exc):
        return _busy(exc)
    if isinstance(exc, (OperationalError, InterfaceError)):
        return DatabaseUnavailable(reason=type(exc.__cause__ or exc).__name__)
    return None


def _busy(exc: BaseException, *, transient: bool = False) -> DatabaseBusy:
    busy = DatabaseBusy("The database is busy; the operation was not applied. Try again.",
                        reason=type(exc.__cause__ or exc).__name__)
    busy.transient = transient  # an enclosing retrying operation may run again
    return busy


def retrying(func: F) -> F:
    """Decorator for a write that opens its own transaction: retry transient conflicts."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return func(*args, **kwargs)
            except (DatabaseError, RetryTransaction, DatabaseBusy) as exc:
                if is_timeout(exc):
                    raise _busy(exc) from exc
                if not is_transient(exc):
                    raise
                # Checked only on failure, so the happy path costs nothing: inside the caller's
                # transaction the work cannot be redone from here.
                if connections[DEFAULT_DB_ALIAS].in_atomic_block:
                    if isinstance(exc, DatabaseBusy):
                        raise
                    raise _busy(exc, transient=True) from exc
                if attempt == ATTEMPTS:
                    raise _busy(exc) from exc
                time.sleep(random.uniform(0, 0.01 * 2 ** attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    return wrapper  # type: ignore[return-value]


#: How many times a step that met a row changed underneath it runs (:func:`until_fresh`).
STALE_ATTEMPTS = 3


def until_fresh(step: Callable[[], T], *, give_up: Callable[[], BillableError]) -> T:
    """Run ``step`` (one transaction) again while it raises :class:`StaleBatch`.

    A conditional update that matched no row (a batch or hold changed between the read and the
    write, possible on SQLite, which has no row locks) rolls the step back; the step then reads
    fresh rows. After :data:`STALE_ATTEMPTS` tries ``give_up()`` is raised. This is the one
    retry loop of the engine; :func:`retrying` wraps whole operations against database
    conflicts (deadlocks, serialization failures, SQLite's write lock).
    """
    for _attempt in range(STALE_ATTEMPTS):
        try:
            return step()
        except StaleBatch:
            continue
    raise give_up()


__all__ = ["ATTEMPTS", "STALE_ATTEMPTS", "TIMEOUT_SQLSTATES", "TRANSIENT_SQLSTATES",
           "RetryTransaction", "is_timeout", "is_transient", "outage", "retrying", "until_fresh"]


def drain(step: Callable[[int], int], *, chunk: int,
          progress: Callable[[int], None] | None = None) -> int:
    """Run ``step(chunk)`` — one committed transaction moving at most ``chunk`` rows — until a
    call moves fewer than ``chunk``; return the total moved.

    The sweeps (expiring batches, releasing overdue holds) work in chunks so no transaction
    locks an unbounded number of rows; ``progress(n)`` is called after each committed chunk.
    """
    moved = 0
    while True:
        count = step(chunk)
        moved += count
        if progress is not None:
            progress(count)
        if count < chunk:
            return moved
