"""An async psycopg 3 connection pool per database alias and event loop (the gated fast path).

The bot's gated fast path (:mod:`billable.ledger.fasthold`) runs two one-statement
transactions on native async connections, with no thread hop, and so does the async consume
(:mod:`billable.ledger.fastconsume`). This module owns those connections and the one runner of
their statements (:func:`run`: the fallback rules and the retry on a broken connection):

* configured from Django's ``DATABASES[alias]`` (``get_connection_params()``: the same host,
  database, user, password, ``OPTIONS`` and adapters as the ORM's connections), in autocommit
  mode — each statement is its own transaction;
* created lazily, one pool per ``(event loop, alias)`` (asyncio objects belong to one loop);
* closed cleanly when the loop shuts down (``asyncio.run`` and pytest's loops call
  ``loop.shutdown_asyncgens()``: a parked async generator per pool closes it then), or
  explicitly with :func:`aclose`.

``BILLABLE_GATED_FAST_PATH = False`` turns the fast path (and so these pools) off; only
PostgreSQL with psycopg 3 and ``psycopg_pool`` installed has them (:func:`available`).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

from django.db import connections

from billable.conf import billable_settings
from billable.exceptions import DatabaseUnavailable
from billable.ledger import sql

try:
    # optional dependency: the ``postgres`` extra installs psycopg 3 and psycopg_pool
    from psycopg_pool import AsyncConnectionPool
except ImportError:  # pragma: no cover - SQLite-only installs
    AsyncConnectionPool = None  # type: ignore[assignment,misc]

try:
    # optional dependency: psycopg 3 (the ``postgres`` extra); without it no pool is available
    from psycopg import AsyncRawCursor, OperationalError
    from psycopg import errors as pg_errors
except ImportError:  # pragma: no cover - SQLite-only installs
    OperationalError = Exception  # type: ignore[assignment,misc]
    AsyncRawCursor = None  # type: ignore[assignment,misc]
    pg_errors = None  # type: ignore[assignment]

logger = logging.getLogger("billable.ledger.apool")

#: Seconds a statement waits for a pooled connection before its caller falls back.
CONNECT_TIMEOUT = 5.0

#: The per-loop pools: ``{loop: {alias: (pool, closer)}}`` (a loop that is gone drops its row).
_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                  dict[str, tuple[Any, AsyncGenerator[None, None]]]] = (
    weakref.WeakKeyDictionary())

#: ``application_name`` of the pool's connections (unless ``OPTIONS`` names one).
APPLICATION_NAME = "billable-gated-fast-path"

#: Connection parameters the async driver must not receive (sync-only Django internals).
_SYNC_ONLY = ("cursor_factory",)


def available(alias: str) -> bool:
    """Whether the fast path may run on ``alias`` (no I/O).

    PostgreSQL with psycopg 3 and ``psycopg_pool``, ``BILLABLE_GATED_FAST_PATH`` on, and the
    calling thread's Django connection not inside ``atomic()`` (a hold inside a caller's
    transaction must be part of it: the general path runs it there).
    """
    if AsyncConnectionPool is None or not billable_settings.GATED_FAST_PATH:
        return False
    conn = connections[alias]
    return conn.vendor == "postgresql" and not conn.in_atomic_block


def lock_timeout() -> str | None:
    """``lock_timeout`` of the pool's connections (``BILLABLE_FAST_PATH_LOCK_TIMEOUT``), or
    ``None`` to wait as long as it takes.

    The pool's connections are not the caller's: a caller whose open transaction, in another
    thread, holds a row lock the statement needs (``async_to_sync`` inside ``atomic()``; its
    thread's Django connection is out of :func:`available`'s sight) would wait for a
    transaction that waits for it. After this long the statement gives up (nothing written)
    and the general path runs, in the caller's thread and transaction.
    """
    seconds = billable_settings.FAST_PATH_LOCK_TIMEOUT
    if not seconds or float(seconds) <= 0:
        return None
    return f"{max(int(float(seconds) * 1000), 1)}ms"


def _params(alias: str) -> dict[str, Any]:
    params = dict(connections[alias].get_connection_params())
    for name in _SYNC_ONLY:
        params.pop(name, None)
    if "prepare_threshold" not in connections[alias].settings_dict.get("OPTIONS", {}):
        # Django turns server-side prepared statements off unless OPTIONS asks for them (for
        # poolers that cannot keep them); this pool's two statements run on every gated update
        # and planning the hold's CTE costs more than running it, so psycopg's default (prepare
        # after 5 runs) applies here. OPTIONS["prepare_threshold"] = None turns it off.
        params.pop("prepare_threshold", None)
    params["autocommit"] = True
    params.setdefault("application_name", APPLICATION_NAME)
    return params


async def alisten(statement: str, *, alias: str) -> Any:
    """A new autocommit connection to ``alias`` outside the pools (the same parameters) that
    ran ``statement`` (a ``LISTEN`` of :mod:`billable.ledger.sql`); the caller reads its
    ``notifies()`` and closes it."""
    # optional dependency: psycopg is needed only on PostgreSQL
    import psycopg

    conn = await psycopg.AsyncConnection.connect(**_params(alias))
    try:
        await conn.execute(statement)
    except BaseException:
        await conn.close()
        raise
    return conn


async def pool(alias: str) -> Any:
    """The open pool of ``alias`` for the running loop (created and opened on first use)."""
    loop = asyncio.get_running_loop()
    pools = _POOLS.setdefault(loop, {})
    found = pools.get(alias)
    if found is not None:
        return found[0]
    wrapper = connections[alias]
    role = wrapper.settings_dict.get("OPTIONS", {}).get("assume_role")
    zone = wrapper.timezone_name
    size = max(int(billable_settings.GATED_POOL_SIZE), 1)
    lock_wait = lock_timeout()

    async def configure(conn: Any) -> None:
        """The session state Django's own connections get (time zone, role), and the lock
        wait of :func:`lock_timeout`."""
        if zone and conn.info.parameter_status("TimeZone") != zone:
            await conn.execute(sql.SET_SESSION, ("TimeZone", zone))
        if role:
            await conn.execute(sql.SET_SESSION, ("role", role))
        if lock_wait:
            await conn.execute(sql.SET_SESSION, ("lock_timeout", lock_wait))

    created = AsyncConnectionPool(
        conninfo="", kwargs=_params(alias), min_size=1, max_size=size, open=False,
        configure=configure, name=f"billable-{alias}")
    # wait for the first connection: a loop that ends right after its first statement (a test,
    # async_to_sync) must not be cancelled while a connection attempt is in flight
    await created.open(wait=True, timeout=CONNECT_TIMEOUT)
    closer = _closer(created)
    await anext(closer)
    if alias in pools:  # another task of this loop opened one meanwhile: keep that one
        await closer.aclose()
        return pools[alias][0]
    pools[alias] = (created, closer)
    return created


class AppliedBefore(Exception):
    """A ``once`` statement's retry met its own row: the attempt whose answer was lost with its
    connection had committed (see :func:`run`)."""


async def run(alias: str, text: bytes, params: Sequence[Any], *, label: str,
              aborts: tuple[str, ...] = (), once: str | None = None,
              after_break: Callable[[list[tuple[Any, ...]] | None],
                                    Awaitable[list[tuple[Any, ...]] | None]] | None = None
              ) -> list[tuple[Any, ...]] | None:
    """Run one statement (one transaction) on a pooled connection of ``alias``; its rows, or
    ``None`` when the caller must run its general path instead (nothing was written).

    ``text`` is sent as is (:func:`billable.ledger.sql.raw`: ``$n`` placeholders, encoded once)
    on a raw cursor, with ``params`` in their order: psycopg parses and reorders nothing.

    ``None`` for a serialization failure or a deadlock (the general path retries conflicts,
    :mod:`billable.ledger.retry`), for a statement that aborted itself on purpose (a cast error
    whose message holds one of ``aborts``: quietly) and for any other driver error or the pool's
    timeout (logged with ``label``). A connection that breaks (terminated backend, restart) is
    retried once on a fresh one: the statement either committed or did nothing, and the
    statements run here are safe to run again (an idempotency key or a state decides).

    ``once`` names the table of a row the statement inserts with a primary key chosen by the
    caller (the DEBIT of a consume without an idempotency key): nothing but that row tells
    whether an attempt whose answer was lost committed. After a broken connection such a
    statement is retried with the **same** parameters, never replaced by the general path
    (which would write a second row under a new id): a retry that meets its own row (a unique
    violation on ``once``) raises :class:`AppliedBefore`, and a retry that breaks too raises
    :class:`~billable.exceptions.DatabaseUnavailable` — the outcome is unknown, and nothing
    may stand in for it.

    ``after_break`` sees the outcome of a retry that followed a broken connection (its rows,
    or ``None`` for the general path) and may replace it: a keyed statement whose first attempt
    committed meets its own key on the retry and would otherwise take itself for somebody
    else's earlier attempt (the gated hold checks its own reservation id).
    """
    broke = False
    for attempt in (1, 2):
        try:
            pool_ = await pool(alias)
            async with pool_.connection(timeout=CONNECT_TIMEOUT) as conn:
                cursor = AsyncRawCursor(conn)
                await cursor.execute(text, params)
                rows = await cursor.fetchall()
            if broke and after_break is not None:
                return await after_break(rows)
            return rows
        except pg_errors.UniqueViolation as exc:
            if broke and once is not None and exc.diag.table_name == once:
                raise AppliedBefore(label) from exc
            logger.warning("%s failed, using the general path: %r", label, exc)
            return None
        except (pg_errors.SerializationFailure, pg_errors.DeadlockDetected):
            return None
        except pg_errors.LockNotAvailable:  # waited lock_timeout(): a lock holder out of sight
            logger.info("%s: a row lock was held past %s; general path", label, lock_timeout())
            return None
        except pg_errors.QueryCanceled as exc:  # statement_timeout or a cancel: not a broken
            logger.warning("%s cancelled, using the general path: %s", label, exc)  # link
            return None
        except pg_errors.InvalidTextRepresentation as exc:
            if not any(marker in str(exc) for marker in aborts):
                logger.warning("%s failed, using the general path: %s", label, exc)
            if broke and after_break is not None:
                return await after_break(None)
            return None
        except OperationalError as exc:
            if attempt == 2:
                if broke and once is not None:
                    logger.warning("%s: the connection broke twice (%s); outcome unknown",
                                   label, exc)
                    raise DatabaseUnavailable(reason=type(exc).__name__) from exc
                logger.warning("%s: no usable connection (%s); general path", label, exc)
                return None
            broke = True
            await pool_.check()  # drop the other idle connections that broke with this one
        except Exception as exc:  # the pool's own timeout, a driver error: never fail here
            logger.warning("%s failed, using the general path: %r", label, exc)
            return None
    return None  # pragma: no cover


async def _closer(created: Any) -> AsyncGenerator[None, None]:
    """Parked until the loop shuts down its async generators, then closes the pool."""
    try:
        yield
    finally:
        await created.close()


async def aclose(alias: str | None = None) -> None:
    """Close the running loop's pool of ``alias`` (every alias when ``None``)."""
    pools = _POOLS.get(asyncio.get_running_loop(), {})
    for name in [alias] if alias is not None else list(pools):
        found = pools.pop(name, None) if name is not None else None
        if found is not None:
            await found[1].aclose()


__all__ = ["APPLICATION_NAME", "CONNECT_TIMEOUT", "AppliedBefore", "aclose", "alisten", "available",
           "lock_timeout", "pool", "run"]
