"""Outer middleware on ``dp.update``: Telegram user → billing user, with a safe cache.

Every update that has a user is resolved through ``ExternalIdentity(provider="telegram",
external_id=str(tg_user.id))``; the identity (and the user) is created on first contact with
the Telegram profile in its metadata.

The cache keeps ``tg_id → (user, profile)``. A cached entry is never trusted blindly: each
update runs one indexed query (``user_id`` of the identity row) and the entry is used only when
it still points to the same account, so a merge or an identity move done by another process is
seen on the next update. Merges and identity writes in this process also evict entries at once.
``BillingConfig.identity_revalidate_after`` (seconds, default 0) lets a host trade that
guarantee for zero queries: a validated entry is then trusted for that long, so a merge made by
another process is seen after at most that delay (in-process merges are still seen at once).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import cache as memoize
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, User
from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, connections

from billable.logs import log_context
from bot_kit import keys
from bot_kit.config import BillingConfig
from bot_kit.facade import BillingFacade
from bot_kit.resilience import describe, is_transient
from bot_kit.texts import pick_language

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


class IdentityCache:
    """Bounded LRU of ``external_id → CachedIdentity`` (thread-safe; evicted by signals)."""

    def __init__(self, max_size: int = 10_000) -> None:
        self.max_size = max_size
        #: The identity provider whose users this cache holds (set by the first middleware).
        self.provider: str | None = None
        self._entries: OrderedDict[str, CachedIdentity] = OrderedDict()
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
            self._entries[external_id] = entry
            self._entries.move_to_end(external_id)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)

    def discard(self, external_id: str) -> None:
        with self._lock:
            self._entries.pop(external_id, None)

    def discard_users(self, user_ids: set[Any]) -> None:
        """Forget every entry that points to one of ``user_ids``."""
        wanted = {str(u) for u in user_ids if u is not None}
        with self._lock:
            for key in [k for k, e in self._entries.items() if str(e.user_id) in wanted]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_CACHES: weakref.WeakSet[IdentityCache] = weakref.WeakSet()


def evict_users(*user_ids: Any) -> None:
    """Evict cached identities of these accounts from every cache (e.g. after a merge)."""
    for cache in list(_CACHES):
        cache.discard_users(set(user_ids))


def evict_identity(external_id: str) -> None:
    """Evict one Telegram id from every cache."""
    for cache in list(_CACHES):
        cache.discard(external_id)


@memoize
def _owner_sql(vendor: str) -> str:
    from billable.models import ExternalIdentity

    meta, quote = ExternalIdentity._meta, connections[DEFAULT_DB_ALIAS].ops.quote_name
    column = {f.name: quote(str(f.column)) for f in meta.concrete_fields}
    return (f"SELECT {column['user']} FROM {quote(meta.db_table)} "
            f"WHERE {column['provider']} = %s AND {column['external_id']} = %s")


def current_owner(provider: str, external_id: str) -> Any:
    """The ``user_id`` the identity points to now, or ``None`` (sync; one unique-index probe).

    Hand-written SQL on the ``(provider, external_id)`` unique index: this runs on every
    update of a cached user, and building the equivalent queryset costs more than running it.
    """
    conn = connections[DEFAULT_DB_ALIAS]
    with conn.cursor() as cursor:
        cursor.execute(_owner_sql(conn.vendor), [provider, external_id])
        row = cursor.fetchone()
    return row[0] if row else None


def profile_of(tg_user: User) -> dict[str, Any]:
    """The Telegram profile kept in the identity metadata (absent fields are left out)."""
    return {name: getattr(tg_user, name) for name in PROFILE_FIELDS
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
                data[keys.BILLING] = BillingFacade(user_id=entry.user_id, user=entry.user,
                                                   config=self.config)
        with log_context(customer_id=data.get(keys.BILLING_USER_ID),
                         telegram_user_id=tg_user.id if tg_user else None):
            return await handler(event, data)

    async def resolve(self, tg_user: User) -> CachedIdentity:
        """The billing account of ``tg_user`` (one indexed query when cached)."""
        external_id = str(tg_user.id)
        profile = profile_of(tg_user)
        fingerprint = tuple(sorted(profile.items()))
        cached = self.cache.get(external_id)
        now = time.monotonic()
        if cached is not None and cached.profile == fingerprint:
            if now - cached.validated_at < self.config.identity_revalidate_after:
                return cached
            current = await sync_to_async(current_owner)(self.config.telegram_provider,
                                                         external_id)
            if current == cached.user_id:
                if self.config.identity_revalidate_after:
                    self.cache.put(external_id, replace(cached, validated_at=now))
                return cached
            self.cache.discard(external_id)
        entry = await self._resolve_slow(external_id, profile, fingerprint)
        self.cache.put(external_id, replace(entry, validated_at=now))
        return entry

    async def _resolve_slow(self, external_id: str, profile: dict[str, Any],
                            fingerprint: tuple[tuple[str, Any], ...]) -> CachedIdentity:
        from billable.services.identities import IdentityService

        resolved = await IdentityService.aresolve_user(
            provider=self.config.telegram_provider, external_id=external_id, profile=profile)
        user = resolved.user
        return CachedIdentity(user=user, user_id=user.pk, profile=fingerprint)


def _connect_signals() -> None:
    """Evict cache entries on merges and identity writes (connected once, weakly)."""
    from django.db.models.signals import post_delete, post_save

    from billable.models import ExternalIdentity
    from billable.signals import customers_merged

    def on_merge(sender: Any, target_user_id: Any = None, source_user_id: Any = None,
                 **kwargs: Any) -> None:
        evict_users(target_user_id, source_user_id)

    def on_identity(sender: Any, instance: Any, **kwargs: Any) -> None:
        evict_identity(str(instance.external_id))
        evict_users(instance.user_id)

    customers_merged.connect(on_merge, weak=False, dispatch_uid="bot_kit.identity.merge")
    post_save.connect(on_identity, sender=ExternalIdentity, weak=False,
                      dispatch_uid="bot_kit.identity.save")
    post_delete.connect(on_identity, sender=ExternalIdentity, weak=False,
                        dispatch_uid="bot_kit.identity.delete")


__all__ = [
    "CachedIdentity",
    "IdentityCache",
    "IdentityMiddleware",
    "current_owner",
    "evict_identity",
    "evict_users",
    "profile_of",
]
