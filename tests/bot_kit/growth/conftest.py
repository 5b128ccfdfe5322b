"""Fixtures of the growth bot tests: a Stars catalog, a config, and a loopback bot harness."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from bot_kit.config import BillingConfig
from bot_kit.testing import FakeBotAPIServer

SECRETS = ("growth-secret-0123456789",)


@pytest.fixture
def config() -> BillingConfig:
    return BillingConfig(offers=("STARS_10", "STARS_50"), signing_secrets=SECRETS,
                         gift_offers=("STARS_10",), precheckout_timeout=0.5)


@pytest.fixture
def catalog(make_product: Callable[..., Any], make_offer: Callable[..., Any]) -> dict[str, Any]:
    """CREDITS sold as STARS_10 (10 for 50 ⭐) and STARS_50 (50 for 200 ⭐)."""
    credits = make_product("CREDITS", name="Credits")
    return {
        "credits": credits,
        "pack": make_offer("STARS_10", items=[(credits, 10)], price="50", currency="XTR",
                           name="10 credits"),
        "big": make_offer("STARS_50", items=[(credits, 50)], price="200", currency="XTR",
                          name="50 credits"),
    }


@dataclass
class Loopback:
    """A Dispatcher polling the loopback Bot API server."""

    server: FakeBotAPIServer
    bot: Bot

    def texts(self) -> list[str]:
        return [str(c.params.get("text", "")) for c in self.server.calls
                if c.method == "sendMessage"]

    def messages_to(self, chat_id: int) -> list[dict[str, Any]]:
        return [c.params for c in self.server.calls
                if c.method == "sendMessage" and int(c.params["chat_id"]) == chat_id]


@pytest.fixture
def loopback(make_dp: Callable[..., Dispatcher],
             config: BillingConfig) -> Callable[..., Any]:
    """``async with loopback() as lb:`` — polling runs until the block ends."""

    @asynccontextmanager
    async def run(cfg: BillingConfig | None = None) -> AsyncIterator[Loopback]:
        dp = make_dp(cfg or config)
        async with FakeBotAPIServer() as server:
            bot = Bot("42:TEST",
                      session=AiohttpSession(api=TelegramAPIServer.from_base(server.url)))
            polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False))
            try:
                yield Loopback(server, bot)
            finally:
                await dp.stop_polling()
                await asyncio.wait_for(polling, timeout=10)
                await bot.session.close()

    return run
