"""Staying up: throttling fails open (one warning per outage), FSM reads degrade, transient
errors are told from bugs."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.types import Update
from django.db.utils import InterfaceError, OperationalError

from bot_kit.config import BillingConfig, Throttle
from bot_kit.fsm import FailSafeStorage
from bot_kit.resilience import is_transient
from bot_kit.testing import FakeSession, UpdateFactory, make_bot
from tests.bot_kit.helpers import texts_sent
from tests.bot_kit.test_quota import gated_router


class Flaky:
    """A throttle backend (or storage) that fails while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.hits = 0

    async def hit(self, key: str, *, limit: int, window: float) -> float:
        self.hits += 1
        if self.down:
            raise ConnectionError("redis: Connection refused")
        return 0.0 if self.hits == 1 else 30.0


@pytest.mark.django_db(transaction=True)
async def test_throttle_fails_open_with_one_warning_per_outage(
        make_dp: Any, updates: UpdateFactory, catalog: dict, grant: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    from tests.bot_kit.test_quota import identify

    backend, runs = Flaky(), []  # type: ignore[var-annotated]
    config = BillingConfig(throttle=Throttle(limit=1, window=60, backend=backend))
    dp, session = make_dp(config, gated_router(runs)), FakeSession()
    bot = make_bot(session)
    tg_user = updates.user()
    await grant(await identify(dp, bot, updates, tg_user), catalog["pack"])
    caplog.set_level(logging.WARNING, logger="bot_kit.throttling")

    async def predict() -> None:
        await dp.feed_update(bot, updates.command("predict", user=tg_user))

    await predict()
    await predict()  # throttled while the backend works
    backend.down = True
    for _ in range(3):
        await predict()
    backend.down = False
    await predict()

    assert len(runs) == 4  # 1 before, 3 during the outage (fail open), 0 after (throttled)
    assert sum(t.startswith("Too many requests") for t in texts_sent(session)) == 2
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1
    assert sum("is back after" in m for m in messages) == 1


class BrokenStorage(MemoryStorage):
    async def get_state(self, key: StorageKey) -> str | None:
        raise ConnectionError("redis down")

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        raise ConnectionError("redis down")

    async def set_state(self, key: StorageKey, state: Any = None) -> None:
        raise ConnectionError("redis down")


async def test_fail_safe_storage_degrades_reads_and_refuses_writes(
        caplog: pytest.LogCaptureFixture) -> None:
    storage = FailSafeStorage(BrokenStorage())
    key = StorageKey(bot_id=42, chat_id=1, user_id=1)
    assert await storage.get_state(key) is None
    assert await storage.get_data(key) == {}
    with pytest.raises(ConnectionError):
        await storage.set_state(key, "form:name")
    assert sum("unavailable" in r.getMessage() for r in caplog.records) == 1

    healthy = FailSafeStorage(MemoryStorage())
    await healthy.set_state(key, "form:name")
    await healthy.set_data(key, {"a": 1})
    assert (await healthy.get_state(key), await healthy.get_data(key)) == ("form:name",
                                                                         {"a": 1})
    await healthy.close()


@pytest.mark.django_db(transaction=True)
async def test_a_bot_with_a_broken_fsm_storage_still_answers(
        updates: UpdateFactory) -> None:
    from aiogram import Dispatcher

    from bot_kit.setup import setup_billing

    dp = Dispatcher(storage=FailSafeStorage(BrokenStorage()))
    setup_billing(dp, BillingConfig())
    session = FakeSession()
    update: Update = updates.command("paysupport")
    await dp.feed_update(make_bot(session), update)
    assert len(texts_sent(session)) == 1


def test_transient_errors_are_told_from_bugs() -> None:
    from aiogram.exceptions import TelegramNetworkError

    assert is_transient(OperationalError("server closed the connection"))
    assert is_transient(InterfaceError("connection already closed"))
    assert is_transient(ConnectionRefusedError())
    assert is_transient(TelegramNetworkError(method=None, message="timeout"))  # type: ignore[arg-type]
    try:
        try:
            raise OperationalError("db down")
        except OperationalError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(ValueError("bug"))
    assert not is_transient(KeyError("bug"))
