"""The bot of the fault tests: the demo bot plus ``/slow``, a gated command that works long.

``FAULTS_SLOW_SECONDS`` sets how long ``/slow`` works; with ``FAULTS_REDIS_URL`` the bot uses
a fail-safe Redis FSM storage and a Redis throttle of ``FAULTS_THROTTLE`` (``limit/window``).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

from aiogram import Dispatcher, Router
from aiogram.filters import Command
from aiogram.types import Message

from bot_kit import RedisThrottle, Throttle, requires_quota
from examples.demo_bot.bot import PREDICTIONS, demo_config
from examples.demo_bot.bot import build_dispatcher as build_demo

ADMIN_ID = 700_000


def slow_router() -> Router:
    router = Router(name="faults")

    @router.message(Command("slow"))
    @requires_quota(PREDICTIONS, amount=1)
    async def slow(message: Message) -> None:
        await asyncio.sleep(float(os.environ.get("FAULTS_SLOW_SECONDS", "30")))
        await message.answer("slow work done")

    return router


def build_dispatcher() -> Dispatcher:
    config = demo_config(admin_ids=frozenset({ADMIN_ID}))
    url = os.environ.get("FAULTS_REDIS_URL")
    if url:
        from redis.asyncio import Redis

        limit, _, window = os.environ.get("FAULTS_THROTTLE", "1/60").partition("/")
        redis = Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        config = replace(config, throttle=Throttle(limit=int(limit), window=float(window),
                                                   backend=RedisThrottle(redis)))
    dp = build_demo(config)
    dp.include_router(slow_router())
    return dp
