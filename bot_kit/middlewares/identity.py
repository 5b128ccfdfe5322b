"""Outer middleware on ``dp.update``: Telegram user → billing user, with a safe cache.

Every update that has a user is resolved through ``ExternalIdentity(provider="telegram",
external_id=str(tg_user.id))``; the identity (and the user) is created on first contact with
the Telegram profile in its metadata.

The cache keeps ``tg_id → (user, profile)`` (bounded LRU, ``identity_cache_size``). Merges and
identity writes in this process evict entries at once (signals). Across processes:

* **with the listener** (:class:`IdentityListener`, PostgreSQL, ``identity_notices=True``,
  started by ``setup_billing`` on the dispatcher's startup): every transaction that merges
  customers or moves/deletes an identity sends a notice on commit; the listener's connection
  receives it and evicts the entries it names. An entry read while the listener was connected,
  with no notice arriving during the read, is then used with **no query and no thread hop**;
* **without it** (not started yet, connection lost, SQLite, notices off): each update of a
  cached user runs one indexed query (``user_id`` of the identity row) and the entry is used
  only when it still points to the same account. On every (re)connect the listener clears the
  caches, so nothing read while it was away is trusted.

``BillingConfig.identity_revalidate_after`` (seconds, default 0) lets a host without notices
trade the per-update query for a delay: a validated entry is then trusted for that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from aiogram import BaseMiddleware, Dispatcher, Router
from aiogram.types import TelegramObject, User

from billable.logs import log_context
from bot_kit import billing, keys
from bot_kit.billing import current_owner
from bot_kit.config import BillingConfig
from bot_kit.context import BillingContext
from bot_kit.resilience import Outage, describe, is_transient
from bot_kit.texts import pick_language
from bot_kit.untrusted import storable

logger = logging.getLogger("bot_kit.identity")

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]
PROFILE_FIELDS = ("username", "first_name", "last_name", "language_code")


@dataclass(frozen=True)
class CachedIdentity:
    """A resolved Telegram user: the billing account and the profile last stored."""

    user: Any
    user_id: int
    profile: tuple[tuple[str, Any], ...]
    validated_at: float = 0.0
    #: The listener epoch this entry is known fresh in (``None``: validate by a query).
    fresh_in: int | None = None


class IdentityCache:
    """Bounded LRU of ``external_id → CachedIdentity`` (thread-safe; evicted by signals)."""

    def __init__(self, max_size: int = 10_000) -> None:
        self.max_size = max_size
        #: The identity provider whose users this cache holds (set by the first middleware).
        self.provider: str | None = None
        self._entries: OrderedDict[str, CachedIdentity] = OrderedDict()
        #: ``str(user_id) → external ids`` of the entries, so evicting an account's entries
        #: costs what it evicts, not a scan of the whole cache.
        self._by_user: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        _CACHES.add(self)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, external_id: str) -> CachedIdentity | None:
        with self._lock:
            entry = self._entries.get(external_id)
            if entry is not None:
                self._entries.move_to_end(external_id)
            return entry

    def put(self, external_id: str, entry: CachedIdentity) -> None:
        if self.max_size == 0:
            return
        with self._lock:
            self._drop(external_id)
            self._entries[external_id] = entry
            self._by_user.setdefault(str(entry.user_id), set()).add(external_id)
            while len(self._entries) > self.max_size:
                oldest = next(iter(self._entries))
                self._drop(oldest)

    def discard(self, external_id: str) -> None:
        with self._lock:
            self._drop(external_id)

    def discard_users(self, user_ids: set[Any]) -> None:
        """Forget every entry that points to one of ``user_ids``."""
        wanted = {str(u) for u in user_ids if u is not None}
        with self._lock:
            for user_key in wanted:
                for external_id in list(self._by_user.get(user_key, ())):
                    self._drop(external_id)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._by_user.clear()

    def _drop(self, external_id: str) -> None:
        """Remove one entry and its reverse-index link (the caller holds the lock)."""
        entry = self._entries.pop(external_id, None)
        if entry is None:
            return
        user_key = str(entry.user_id)
        linked = self._by_user.get(user_key)
        if linked is not None:
            linked.discard(external_id)
            if not linked:
                del self._by_user[user_key]


_CACHES: weakref.WeakSet[IdentityCache] = weakref.WeakSet()


def evict_users(*user_ids: Any) -> None:
    """Evict cached identities of these accounts from every cache (e.g. after a merge)."""
    for cache in list(_CACHES):
        cache.discard_users(set(user_ids))


def evict_identity(external_id: str) -> None:
    """Evict one Telegram id from every cache."""
    for cache in list(_CACHES):
        cache.discard(external_id)


def clear_caches() -> None:
    """Empty every identity cache of the process."""
    for cache in list(_CACHES):
        cache.clear()


class IdentityListener:
    """One per process: a dedicated async connection that LISTENs to identity change notices
    and evicts the entries they name; while it is connected, cached entries need no query.

    ``epoch`` changes on every connect and every loss and ``notices`` on every notice: an entry
    is trusted only in the epoch it was read in, and only if no notice arrived while it was
    being read (so a read racing a merge is checked again by the next update).
    """

    def __init__(self, *, retry_after: float = 0.2, max_retry_after: float = 5.0) -> None:
        self.retry_after = retry_after
        self.max_retry_after = max_retry_after
        self.epoch = 0
        self.notices = 0
        self.connects = 0
        self._live = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        self._users = 0
        #: One warning when the listener cannot connect, one line when it is back (a database
        #: outage or missing triggers is two lines, not one per retry).
        self._outage = Outage("Identity notices (querying per update meanwhile)", logger)

    @property
    def live(self) -> bool:
        """Connected, listening, and its event loop is running (no query needed)."""
        loop = self._loop
        return self._live and loop is not None and loop.is_running()

    def stamp(self) -> tuple[int, int] | None:
        """Taken before a read: ``(epoch, notices)`` while live, else ``None``."""
        return (self.epoch, self.notices) if self.live else None

    def fresh_epoch(self, stamp: tuple[int, int] | None) -> int | None:
        """The epoch an entry read since ``stamp`` may be trusted in (``None``: not at all)."""
        if stamp is None or stamp != self.stamp():
            return None
        return stamp[0]

    async def start(self) -> None:
        """Start listening on the running loop (PostgreSQL only; counted, see :meth:`stop`)."""
        if not billing.identity_notices_supported():
            return
        if self._loop is not None and self._loop.is_closed():  # its loop ended without stop()
            self._task, self._live, self._users = None, False, 0
            self.epoch += 1
        self._users += 1
        if self._task is None or self._task.done():
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._run(), name="bot_kit.identity.listener")

    async def stop(self) -> None:
        """Undo one :meth:`start`; the last one closes the connection."""
        if self._users == 0:
            return
        self._users -= 1
        if self._users or self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def wait_live(self, seconds: float = 5.0) -> bool:
        """Wait until the listener is connected (``False`` after ``seconds``)."""
        deadline = time.monotonic() + seconds
        while not self.live:
            if time.monotonic() > deadline or self._task is None:
                return False
            await asyncio.sleep(0.01)
        return True

    async def _run(self) -> None:
        delay = self.retry_after
        while True:
            try:
                conn = await billing.alisten_identity_changes()
            except Exception as exc:
                self._outage.failed(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_after)
                continue
            self._conn = conn
            try:
                self.epoch += 1
                clear_caches()
                self._live = True
                self.connects += 1
                self._outage.recovered()
                delay = self.retry_after
                async for notice in conn.notifies():
                    self.apply(notice.payload)
            except Exception as exc:
                logger.warning("Identity notices lost (querying per update until back): %s",
                               describe(exc))
            finally:
                self._live = False
                self.epoch += 1
                self._conn = None
                with contextlib.suppress(Exception):
                    await conn.close()
            await asyncio.sleep(delay)

    def apply(self, payload: str) -> None:
        """Evict what one notice names (everything when it says so)."""
        self.notices += 1
        change = billing.identity_change(payload)
        if change.everything:
            clear_caches()
            return
        for _provider, external_id in change.identities:
            evict_identity(external_id)
        if change.user_ids:
            evict_users(*change.user_ids)


#: The process's listener (started by ``setup_billing`` on the dispatcher's startup).
LISTENER = IdentityListener()


async def start_identity_listener() -> IdentityListener:
    """Start the process's :data:`LISTENER` on the running loop (a no-op on SQLite)."""
    await LISTENER.start()
    return LISTENER


async def stop_identity_listener() -> None:
    """Undo one :func:`start_identity_listener`."""
    await LISTENER.stop()


def profile_of(tg_user: User) -> dict[str, Any]:
    """The Telegram profile kept in the identity metadata (absent fields are left out).

    Names are untrusted text: characters PostgreSQL cannot store (NUL, lone surrogates), which
    billable refuses, are dropped or replaced here, so such a name never stops a user from being
    identified.
    """
    return {name: storable(getattr(tg_user, name)) for name in PROFILE_FIELDS
            if getattr(tg_user, name, None) is not None}


class IdentityMiddleware(BaseMiddleware):
    """Puts ``billing_user``, ``billing_user_id``, ``billing``, ``billing_lang`` and
    ``billing_config`` into the handler data of every update that has a user, and binds the
    customer and Telegram user ids to every log record of the update (``billable.logs``).

    When the database is unreachable the update still goes on (``/paysupport`` must answer);
    only the config and the language are injected then, and gated handlers are refused.
    """

    def __init__(self, config: BillingConfig, cache: IdentityCache | None = None) -> None:
        self.config = config
        self.cache = cache if cache is not None else IdentityCache(config.identity_cache_size)
        # Entries are keyed by Telegram id only: one cache serves one identity provider (bots
        # with per-bot wallets cannot share a cache).
        owner = getattr(self.cache, "provider", None)
        if owner is not None and owner != config.telegram_provider:
            raise ValueError(f"This IdentityCache already serves provider {owner!r}; "
                             f"give the bot of {config.telegram_provider!r} its own cache")
        self.cache.provider = config.telegram_provider

    async def __call__(self, handler: Handler, event: TelegramObject,
                       data: dict[str, Any]) -> Any:
        data[keys.BILLING_CONFIG] = self.config
        tg_user: User | None = data.get("event_from_user")
        data[keys.BILLING_LANG] = pick_language(
            tg_user.language_code if tg_user else None, self.config)
        if tg_user is not None:
            try:
                entry = await self.resolve(tg_user)
            except Exception as exc:
                if is_transient(exc):  # one line, no traceback: the database is unreachable
                    logger.warning("Could not resolve Telegram user %s: %s", tg_user.id,
                                   describe(exc))
                else:
                    logger.exception("Could not resolve Telegram user %s", tg_user.id)
            else:
                data[keys.BILLING_USER] = entry.user
                data[keys.BILLING_USER_ID] = entry.user_id
                data[keys.BILLING] = BillingContext(
                    user_id=entry.user_id, user=entry.user, lang=data[keys.BILLING_LANG],
                    config=self.config, telegram_user_id=tg_user.id)
        with log_context(customer_id=data.get(keys.BILLING_USER_ID),
                         telegram_user_id=tg_user.id if tg_user else None):
            return await handler(event, data)

    async def resolve(self, tg_user: User) -> CachedIdentity:
        """The billing account of ``tg_user``: no query when cached and fresh (listener
        connected), else one indexed query when cached."""
        external_id = str(tg_user.id)
        profile = profile_of(tg_user)
        fingerprint = tuple(sorted(profile.items()))
        cached = self.cache.get(external_id)
        listener = LISTENER if self.config.identity_notices else None
        if cached is not None and cached.profile == fingerprint:
            if (listener is not None and cached.fresh_in is not None
                    and cached.fresh_in == listener.epoch and listener.live):
                return cached
            now = time.monotonic()
            if now - cached.validated_at < self.config.identity_revalidate_after:
                return cached
            stamp = listener.stamp() if listener is not None else None
            current = await billing.acurrent_owner(self.config.telegram_provider, external_id)
            if current == cached.user_id:
                fresh_in = listener.fresh_epoch(stamp) if listener is not None else None
                if self.config.identity_revalidate_after or fresh_in is not None:
                    self.cache.put(external_id, replace(cached, validated_at=now,
                                                        fresh_in=fresh_in))
                return cached
            self.cache.discard(external_id)
        stamp = listener.stamp() if listener is not None else None
        entry = await self._resolve_slow(external_id, profile, fingerprint)
        fresh_in = listener.fresh_epoch(stamp) if listener is not None else None
        self.cache.put(external_id, replace(entry, validated_at=time.monotonic(),
                                            fresh_in=fresh_in))
        return entry

    async def _resolve_slow(self, external_id: str, profile: dict[str, Any],
                            fingerprint: tuple[tuple[str, Any], ...]) -> CachedIdentity:
        account = await billing.aresolve_account(self.config.telegram_provider, external_id,
                                                 profile)
        return CachedIdentity(user=account.user, user_id=account.user_id, profile=fingerprint)


def _connect_signals() -> None:
    """Evict cache entries on merges and identity writes (connected once)."""
    billing.watch_identities(on_merge=lambda user_ids: evict_users(*user_ids),
                             on_identity=_on_identity, uid="bot_kit.identity")


def _on_identity(external_id: str, user_id: Any) -> None:
    evict_identity(external_id)
    evict_users(user_id)


def billing_config(dp: Dispatcher | Router) -> BillingConfig | None:
    """The ``BillingConfig`` that ``setup_billing`` installed on ``dp`` (``None`` if none).

    Read from the identity middleware registered on ``dp`` (public middleware managers).
    """
    observer = dp.update if isinstance(dp, Dispatcher) else dp.message
    for middleware in observer.outer_middleware:
        if isinstance(middleware, IdentityMiddleware):
            return middleware.config
    return None


__all__ = [
    "LISTENER",
    "CachedIdentity",
    "IdentityCache",
    "IdentityListener",
    "IdentityMiddleware",
    "billing_config",
    "clear_caches",
    "current_owner",
    "evict_identity",
    "evict_users",
    "profile_of",
    "start_identity_listener",
    "stop_identity_listener",
]
