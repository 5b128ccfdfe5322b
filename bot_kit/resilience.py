"""Staying up through outages: connection hygiene, transient errors, one warning per outage.

Connection hygiene for the kit's long-lived processes (bot, webhook server, workers).

A Django request closes unusable connections at its start and end (``close_old_connections``
on ``request_started`` / ``request_finished``). A bot process has no request cycle, so without
help a connection killed by a PostgreSQL restart stays in the thread that runs the ORM and every
later query fails. The kit therefore calls :func:`recycle` around each update and each job:
broken or expired connections are closed and the next query opens a new one (with
``CONN_HEALTH_CHECKS`` on, a reused connection is also pinged once per update).

:func:`is_transient` tells an infrastructure failure (database, Redis, network, Telegram
unreachable) from a bug: transient failures are retried without limit, with a capped backoff,
and logged as one line; anything else counts towards the dead-letter limit.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.management.base import CommandError
from django.db import close_old_connections
from django.db.utils import InterfaceError, OperationalError

from billable.exceptions import DatabaseBusy, describe

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("bot_kit.resilience")

#: Exception class names of optional libraries that mean "the service is unreachable".
_TRANSIENT_NAMES = frozenset({
    "ConnectionError", "TimeoutError", "BusyLoadingError",  # redis-py
    "TelegramNetworkError", "TelegramServerError", "TelegramRetryAfter",  # aiogram
    "ClientError", "ServerDisconnectedError",  # aiohttp
    "PoolTimeout",  # psycopg-pool
})


def recycle() -> None:
    """Close this thread's unusable or expired database connections (sync)."""
    try:
        close_old_connections()
    except Exception as exc:  # closing a dead socket may raise; the next query reconnects
        logger.debug("closing a broken connection raised %r", exc)


async def arecycle() -> None:
    """Async twin of :func:`recycle`: runs in the thread that runs the ORM for this loop."""
    await sync_to_async(recycle)()


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or its cause) says a service is unreachable, not that code is wrong."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (OperationalError, InterfaceError, OSError, TimeoutError,
                                DatabaseBusy)):
            return True
        if any(cls.__name__ in _TRANSIENT_NAMES for cls in type(current).__mro__):
            return True
        current = current.__cause__ or current.__context__
    return False


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait after the ``attempt``-th failure in a row (doubling, capped)."""
    return float(min(cap, base * 2 ** max(attempt - 1, 0)))


class Outage:
    """Logs one warning when a dependency starts failing and one line when it is back.

    Call :meth:`failed` on every failure and :meth:`recovered` on every success; only the
    transitions are logged, so an outage of an hour is two log lines, not thousands.
    """

    def __init__(self, what: str, log: logging.Logger | None = None) -> None:
        self.what = what
        self.log = log or logger
        self.down = False
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if not self.down:
            self.down = True
            self.log.warning("%s unavailable (%s); degrading until it is back", self.what,
                             describe(exc))

    def recovered(self) -> None:
        if self.down:
            self.down = False
            self.log.warning("%s is back after %d failure(s)", self.what, self.failures)
        self.failures = 0


def outage_is_command_error(handle: F) -> F:
    """Decorator for a job command's ``handle``: an unreachable database or Bot API (a
    :func:`is_transient` error) ends the run with one ``CommandError`` line and exit status 1
    — cron mail and the journal get the cause, not a traceback; a bug keeps its traceback.
    Work committed before the outage is kept; the next run continues."""

    @functools.wraps(handle)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handle(*args, **kwargs)
        except CommandError:
            raise
        except Exception as exc:
            if not is_transient(exc):
                raise
            raise CommandError(f"Unavailable: {describe(exc)}. Work committed before it is "
                               "kept; run the job again.") from exc

    return wrapper  # type: ignore[return-value]


__all__ = ["Outage", "arecycle", "backoff", "describe", "is_transient",
           "outage_is_command_error", "recycle"]
