"""Shared by the identity notice tests: a router that records the billing user of each update,
a wait for an asynchronous condition, and a counter of the identity port's calls (the
``listener`` and ``idle`` fixtures live in ``conftest.py``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiogram import F, Router
from aiogram.types import Message

from bot_kit import billing

#: Seconds to wait for a notice before a test fails.
WAIT = 10.0


def recording_router(seen: list[int]) -> Router:
    router = Router()

    @router.message(F.text == "who")
    async def who(message: Message, billing_user_id: int) -> None:
        seen.append(billing_user_id)

    return router


async def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


class Calls:
    """Counts the port calls that cost a thread hop and a query."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.owner = 0
        self.resolve = 0
        owner, resolve = billing.acurrent_owner, billing.aresolve_account

        async def counted_owner(*args: Any) -> Any:
            self.owner += 1
            return await owner(*args)

        async def counted_resolve(*args: Any) -> Any:
            self.resolve += 1
            return await resolve(*args)

        monkeypatch.setattr(billing, "acurrent_owner", counted_owner)
        monkeypatch.setattr(billing, "aresolve_account", counted_resolve)

    def reset(self) -> None:
        self.owner = self.resolve = 0


