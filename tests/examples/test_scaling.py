"""What docs/scaling.md promises, checked: several bot workers on one database, shared Redis
throttling and FSM, and webhook mode.

Each "worker" is a separate Dispatcher with its own Bot session, as in separate processes; the
database (and Redis) is what they share.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiogram import Bot, Dispatcher
from aiogram.types import Update
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections

from bot_kit import RedisThrottle, Throttle
from bot_kit.testing import FakeSession, UpdateFactory, make_bot, update_to_json
from examples.demo_bot.bot import PREDICTIONS, TRIAL_SKU, build_dispatcher, demo_config
from tests.helpers import requires_postgres, run_in_threads

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_available() -> bool:
    parts = urlsplit(REDIS_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1):
            return True
    except OSError:
        return False


requires_redis = pytest.mark.skipif(not redis_available(),
                                    reason=f"needs a Redis server at {REDIS_URL}")


def customer_with_trial(telegram_id: int) -> int:
    """A billing user known by its Telegram id, holding the demo trial (3 predictions)."""
    from billable.models import ExternalIdentity
    from billable.services import TransactionService

    call_command("billable_seed_demo", verbosity=0)
    user = get_user_model().objects.create(username=f"tg{telegram_id}")
    ExternalIdentity.objects.create(provider="telegram", external_id=str(telegram_id),
                                    user=user)
    TransactionService.grant_offer(user.pk, TRIAL_SKU, source="trial_activation")
    return int(user.pk)


def prophecies(*sessions: FakeSession) -> int:
    return sum(str(call.params.get("text", "")).startswith("🔮")
               for session in sessions for call in session.calls_to("sendMessage"))


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_update_retried_on_another_worker_is_charged_once() -> None:
    from billable.services import TransactionService

    updates = UpdateFactory()
    user_id = customer_with_trial(updates.default_user.id)
    workers = [(build_dispatcher(), make_bot(FakeSession())) for _ in range(2)]
    predict = updates.command("predict")

    async def deliver(dp: Dispatcher, bot: Bot) -> None:
        async with ThreadSensitiveContext():  # this "process" gets its own database thread
            try:
                await dp.feed_update(bot, predict)
            finally:
                await sync_to_async(connections.close_all)()

    results = run_in_threads(2, lambda i: asyncio.run(deliver(*workers[i])))

    assert [r for r in results if isinstance(r, BaseException)] == []
    sessions = [bot.session for _, bot in workers]
    assert prophecies(*sessions) == 1  # type: ignore[arg-type]
    assert TransactionService.get_balance(user_id, PREDICTIONS) == 2


@pytest.fixture
async def redis() -> AsyncIterator[Any]:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@requires_redis
@pytest.mark.django_db(transaction=True)
async def test_redis_throttle_and_fsm_are_shared_between_workers(redis: Any) -> None:
    from aiogram.fsm.storage.base import DefaultKeyBuilder, StorageKey
    from aiogram.fsm.storage.redis import RedisStorage

    prefix = f"test:{uuid.uuid4().hex}:"
    updates = UpdateFactory()
    await sync_to_async(customer_with_trial)(updates.default_user.id)
    throttle = Throttle(limit=1, window=60, backend=RedisThrottle(redis, prefix=prefix))
    config = replace(demo_config(), throttle=throttle)
    # the test's own key prefix: two suite runs at once (dev.py runs two) never share a key
    storage = RedisStorage(redis, key_builder=DefaultKeyBuilder(prefix=f"{prefix}fsm"))
    first, second = (build_dispatcher(config, storage=storage) for _ in range(2))
    first_bot, second_bot = make_bot(FakeSession()), make_bot(FakeSession())
    try:
        await first.feed_update(first_bot, updates.command("predict"))
        await second.feed_update(second_bot, updates.command("predict"))

        assert prophecies(first_bot.session) == 1  # type: ignore[arg-type]
        (throttled,) = second_bot.session.calls_to("sendMessage")  # type: ignore[attr-defined]
        assert throttled.params["text"].startswith("Too many requests")

        user = updates.default_user
        key = StorageKey(bot_id=first_bot.id, chat_id=user.id, user_id=user.id)
        await first.fsm.storage.set_state(key, "demo:waiting")
        assert await second.fsm.storage.get_state(key) == "demo:waiting"
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)


@pytest.mark.django_db(transaction=True)
async def test_webhook_mode_serves_the_demo_bot() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from bot_kit.inbox.webhook import SECRET_HEADER, webhook_app
    from bot_kit.inbox.worker import InboxWorker

    await sync_to_async(call_command)("billable_seed_demo", verbosity=0)
    dp, bot = build_dispatcher(), make_bot(FakeSession())
    worker = InboxWorker(dp, bot)
    app = webhook_app(bot.id, path="/telegram/webhook", secret="s3cret", on_stored=worker.wake)
    update: Update = UpdateFactory().command("start")

    async with TestClient(TestServer(app)) as client:
        refused = await client.post("/telegram/webhook", json=update_to_json(update),
                                    headers={SECRET_HEADER: "wrong"})
        accepted = await client.post("/telegram/webhook", data=json.dumps(update_to_json(update)),
                                     headers={SECRET_HEADER: "s3cret",
                                              "Content-Type": "application/json"})
    assert refused.status == 401
    assert accepted.status == 200
    assert await worker.process_due() == {update.update_id: "done"}
    session: Any = bot.session
    (welcome,) = session.calls_to("sendMessage")
    assert welcome.params["text"].startswith("Welcome to the billable demo bot!")
