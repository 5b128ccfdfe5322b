"""``InboxPoller``: long polling that confirms an offset only after the batch is committed.

Telegram forgets every update below the ``offset`` of the next ``getUpdates``. aiogram's own
polling moves the offset as soon as it has *read* an update, whether or not its handler
finished, so a crash mid-batch loses updates. The poller stores each batch in the inbox (one
transaction) and only then asks for the next batch with the new offset; the inbox workers
process the rows. A batch that cannot be stored (database down) is fetched again later — the
UNIQUE key makes the second store a no-op for rows that did get in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiogram.methods import GetUpdates
from django.db.utils import Error as DatabaseError

from bot_kit.inbox import store
from bot_kit.resilience import Outage, arecycle, backoff, describe, is_transient

if TYPE_CHECKING:
    from aiogram import Bot

logger = logging.getLogger("bot_kit.inbox")


def raw_update(update: Any) -> dict[str, Any]:
    """An aiogram ``Update`` as Telegram sent it (aliases, unix dates, no nulls)."""
    data: dict[str, Any] = update.model_dump(mode="json", exclude_none=True, by_alias=True)
    return data


class InboxPoller:
    """Fetches updates with ``getUpdates`` and commits them to the inbox before confirming."""

    def __init__(self, bot: Bot, *, allowed_updates: Sequence[str] | None = None,
                 timeout: int = 25, limit: int = 100,
                 on_stored: Callable[[], None] | None = None) -> None:
        self.bot = bot
        self.allowed_updates = list(allowed_updates) if allowed_updates is not None else None
        self.timeout, self.limit = timeout, limit
        self.on_stored = on_stored
        self.offset: int | None = None
        self.telegram = Outage("Telegram Bot API (getUpdates)", logger)
        self.database = Outage("database (inbox store)", logger)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; a fetch in flight is abandoned (nothing was confirmed)."""
        failures = 0
        while not stop.is_set():
            fetch = asyncio.ensure_future(self.poll_once())
            halt = asyncio.ensure_future(stop.wait())
            await asyncio.wait([fetch, halt], return_when=asyncio.FIRST_COMPLETED)
            halt.cancel()
            if not fetch.done():
                fetch.cancel()
                await asyncio.gather(fetch, return_exceptions=True)
                return
            try:
                fetch.result()
                failures = 0
            except Exception as exc:
                failures += 1
                self._failed(exc)
                await asyncio.wait([asyncio.ensure_future(stop.wait())],
                                   timeout=backoff(failures, base=0.5, cap=15.0))

    async def poll_once(self) -> int:
        """One ``getUpdates`` → store → advance the offset; returns the number of updates."""
        method = GetUpdates(offset=self.offset, limit=self.limit, timeout=self.timeout,
                            allowed_updates=self.allowed_updates)
        updates = await self.bot(method, request_timeout=self.timeout + 10)
        self.telegram.recovered()
        if not updates:
            return 0
        try:
            await store.astore_many(self.bot.id, [raw_update(u) for u in updates])
        except Exception:
            await arecycle()
            raise
        self.database.recovered()
        self.offset = max(u.update_id for u in updates) + 1
        if self.on_stored is not None:
            self.on_stored()
        return len(updates)

    def _failed(self, exc: Exception) -> None:
        if not is_transient(exc):
            logger.error("polling failed: %s", describe(exc), exc_info=exc)
            return

        outage = self.database if isinstance(exc, DatabaseError) else self.telegram
        outage.failed(exc)


__all__ = ["InboxPoller", "raw_update"]
