"""Per-user throttling of gated commands: memory and Redis backends."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from billable.models import ExternalIdentity
from billable.services import TransactionService
from bot_kit.config import BillingConfig, Throttle
from bot_kit.decorators import requires_quota
from bot_kit.texts import get_text
from bot_kit.throttling import MemoryThrottle, RedisThrottle, ThrottleBackend
from tests.bot_kit.helpers import texts_sent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def connect_redis() -> Any:
    import redis.asyncio as redis

    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1)
    try:
        await client.ping()
    except Exception as exc:  # pragma: no cover - depends on the machine
        await client.aclose()
        pytest.skip(f"Redis on 127.0.0.1:6379 is not available: {exc}")
    return client


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[ThrottleBackend]:
    """Each throttling test runs against both backends (Redis with a unique key prefix)."""
    if request.param == "memory":
        yield MemoryThrottle()
        return
    client = await connect_redis()
    prefix = f"test:bot_kit:{uuid.uuid4().hex}:"
    yield RedisThrottle(client, prefix=prefix)
    keys = [key async for key in client.scan_iter(f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_backend_allows_limit_hits_per_window(backend: ThrottleBackend) -> None:
    results = [await backend.hit("u1", limit=2, window=30) for _ in range(3)]

    assert results[:2] == [0.0, 0.0]
    assert 29 < results[2] <= 30
    assert await backend.hit("u2", limit=2, window=30) == 0.0


async def test_memory_window_resets() -> None:
    clock = Clock()
    throttle = MemoryThrottle(clock=clock)
    assert await throttle.hit("u", limit=1, window=10) == 0.0
    assert await throttle.hit("u", limit=1, window=10) == 10.0

    clock.now += 10

    assert await throttle.hit("u", limit=1, window=10) == 0.0


async def test_memory_throttle_is_bounded() -> None:
    throttle = MemoryThrottle(max_keys=2)
    for key in ("a", "b", "c"):
        await throttle.hit(key, limit=1, window=60)

    assert await throttle.hit("a", limit=1, window=60) == 0.0  # "a" was evicted


def test_throttle_config_is_validated() -> None:
    with pytest.raises(ValueError, match="limit"):
        Throttle(limit=0)


@pytest.mark.django_db(transaction=True)
async def test_gated_command_is_throttled_and_not_charged(make_dp, bot, session, updates,
                                                          catalog, backend):
    runs: list[int] = []
    router = Router()

    @router.message(Command("predict"))
    @requires_quota("PREDICTIONS")
    async def predict(message: Message, billing_user_id: int) -> None:
        runs.append(billing_user_id)

    config = BillingConfig(throttle=Throttle(limit=1, window=60, backend=backend))
    dp = make_dp(config, router)
    tg = updates.user(language_code="ru")
    await dp.feed_update(bot, updates.message("hi", user=tg))
    user_id = await ExternalIdentity.objects.filter(external_id=str(tg.id)).values_list(
        "user_id", flat=True).aget()
    await TransactionService.agrant_offer(user_id, catalog["pack"])

    await dp.feed_update(bot, updates.command("predict", user=tg))
    await dp.feed_update(bot, updates.command("predict", user=tg))
    await dp.feed_update(bot, updates.command("balance", user=tg))  # not gated: not throttled

    assert len(runs) == 1
    assert await TransactionService.aget_balance(user_id, "PREDICTIONS") == 9
    sent = texts_sent(session)
    assert sent[0] == get_text("throttled", "ru", seconds=60)
    assert sent[1].startswith(get_text("balance_header", "ru"))
