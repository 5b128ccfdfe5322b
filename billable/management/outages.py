"""Database outages in the job commands: one clear line, and loops that outlive them.

A job command run by cron, systemd or Celery whose database connection breaks (a restart, a
failover, a terminated backend) or that waits past a lock / statement timeout used to end with
a traceback; a ``--loop`` service ended altogether, and the events stopped leaving until someone
restarted it. Here:

* :func:`outage_is_command_error` — a one-shot run fails (non-zero exit, as docs/operations.md
  says) with ``CommandError: Database unavailable: <the driver's first line>. Work committed
  before it is kept; run the job again.``; other errors (bugs) keep their traceback;
* :class:`LoopGuard` — a ``--loop`` service recycles unusable connections before every pass
  (``close_old_connections``: a broken persistent connection is dropped, a pooled one goes back
  to the pool), survives an outage (one warning when it starts, one line when the database is
  back, a pause doubling from 0.5 s to 10 s in between) and still raises a bug.

Every job works in short committed steps, so a pass cut short leaves whole rows only and the
next pass continues where it stopped.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.management.base import CommandError
from django.db import close_old_connections

from billable.exceptions import DatabaseBusy
from billable.ledger.retry import outage

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("billable.jobs")

#: Pause after a failed pass: doubles from ``FIRST_PAUSE`` up to ``MAX_PAUSE`` seconds.
FIRST_PAUSE = 0.5
MAX_PAUSE = 10.0


def describe(exc: BaseException) -> str:
    """The first line of the database error behind ``exc``."""
    cause = exc.__cause__ or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def recycle() -> None:
    """Close this thread's unusable or expired connections (closing a dead socket may raise:
    the next query reconnects anyway)."""
    try:
        close_old_connections()
    except Exception as exc:
        logger.debug("closing a broken connection raised %r", exc)


def outage_message(exc: BaseException) -> str | None:
    """``Database unavailable: …`` / ``Database busy: …`` for an outage, ``None`` otherwise."""
    known = outage(exc)
    if known is None:
        return None
    what = "Database busy" if isinstance(known, DatabaseBusy) else "Database unavailable"
    return f"{what}: {describe(exc)}"


def outage_is_command_error(handle: F) -> F:
    """Decorator for ``Command.handle``: a database outage becomes a one-line ``CommandError``."""

    @functools.wraps(handle)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handle(*args, **kwargs)
        except CommandError:
            raise
        except Exception as exc:
            message = outage_message(exc)
            if message is None:
                raise
            raise CommandError(f"{message}. Work committed before it is kept; "
                               "run the job again.") from exc

    return wrapper  # type: ignore[return-value]


class LoopGuard:
    """Runs one pass of a ``--loop`` service at a time and keeps the loop alive through
    database outages (see the module docstring)."""

    def __init__(self, what: str, stop: threading.Event) -> None:
        self.what = what
        self.stop = stop
        self.failures = 0

    def run(self, one_pass: Callable[[], Any]) -> Any:
        """``one_pass()``'s result, or ``None`` after an outage (the pause already waited)."""
        recycle()
        try:
            result = one_pass()
        except Exception as exc:
            message = outage_message(exc)
            if message is None:
                raise
            self.failures += 1
            if self.failures == 1:
                logger.warning("%s: %s; retrying until the database is back", self.what,
                               message)
            recycle()
            self.stop.wait(min(MAX_PAUSE, FIRST_PAUSE * 2 ** (self.failures - 1)))
            return None
        if self.failures:
            logger.warning("%s: the database is back after %d failed passes", self.what,
                           self.failures)
            self.failures = 0
        return result


__all__ = ["LoopGuard", "describe", "outage_is_command_error", "outage_message", "recycle"]
