"""``FailSafeStorage``: aiogram FSM storage that keeps the bot answering while Redis is down.

aiogram reads the FSM state of every update before any handler runs, so with a plain
``RedisStorage`` a Redis outage stops the whole bot — payments included. Wrapped in
``FailSafeStorage(RedisStorage(redis))``:

* reads that fail (``get_state``, ``get_data``) answer "no state" / ``{}``: every handler still
  runs, conversations in progress restart from the beginning;
* writes that fail (``set_state``, ``set_data``) raise, so the update fails and the inbox
  retries it later instead of pretending the state was saved;
* one warning when the outage starts, one line when Redis is back.

Billing never depends on FSM state: payments, ``/balance`` and gated commands keep working.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StorageKey

from bot_kit.resilience import Outage

logger = logging.getLogger("bot_kit.fsm")


class FailSafeStorage(BaseStorage):
    """Wraps another FSM storage; failed reads degrade to "no state" (see the module doc)."""

    def __init__(self, inner: BaseStorage) -> None:
        self.inner = inner
        self.outage = Outage(f"FSM storage {type(inner).__name__}", logger)

    async def get_state(self, key: StorageKey) -> str | None:
        try:
            state = await self.inner.get_state(key)
        except Exception as exc:
            self.outage.failed(exc)
            return None
        self.outage.recovered()
        return state

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        try:
            data = await self.inner.get_data(key)
        except Exception as exc:
            self.outage.failed(exc)
            return {}
        self.outage.recovered()
        return data

    async def set_state(self, key: StorageKey, state: str | State | None = None) -> None:
        try:
            await self.inner.set_state(key, state)
        except Exception as exc:
            self.outage.failed(exc)
            raise
        self.outage.recovered()

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        try:
            await self.inner.set_data(key, data)
        except Exception as exc:
            self.outage.failed(exc)
            raise
        self.outage.recovered()

    async def close(self) -> None:
        await self.inner.close()


__all__ = ["FailSafeStorage"]
