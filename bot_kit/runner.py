"""Run a bot against Telegram, a self-hosted Bot API server or a loopback fake.

``TELEGRAM_BOT_TOKEN`` names the bot; ``TELEGRAM_API_SERVER`` (optional) is the base URL of
another Bot API server (``http://127.0.0.1:8081`` for ``telegram-bot-api --local``, or the URL of
``bot_kit.testing.FakeBotAPIServer``), used through aiogram's ``TelegramAPIServer.from_base``.
"""

from __future__ import annotations

import os
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer


class BotConfigurationError(RuntimeError):
    """``TELEGRAM_BOT_TOKEN`` is missing."""


def build_bot(token: str | None = None, *, api_server: str | None = None,
              default: DefaultBotProperties | None = None) -> Bot:
    """A ``Bot`` from arguments or the environment (``TELEGRAM_BOT_TOKEN``,
    ``TELEGRAM_API_SERVER``)."""
    token = token or os.environ.get("TELEGRAM_BOT_TOKEN", "").strip()
    if not token:
        raise BotConfigurationError("Set TELEGRAM_BOT_TOKEN (the token from @BotFather)")
    base = api_server or os.environ.get("TELEGRAM_API_SERVER", "").strip()
    session = AiohttpSession(api=TelegramAPIServer.from_base(base)) if base else None
    return Bot(token, session=session, default=default)


async def run_polling(dp: Dispatcher, bot: Bot | None = None, **kwargs: Any) -> None:
    """Long-poll until stopped; only the update types the handlers use are requested."""
    bot = bot or build_bot()
    await bot.delete_webhook(drop_pending_updates=False)
    await dp.start_polling(bot, allowed_updates=dp.resolve_used_update_types(), **kwargs)


def run_webhook(dp: Dispatcher, bot: Bot | None = None, *, base_url: str,
                path: str = "/telegram/webhook", host: str = "127.0.0.1", port: int = 8080,
                secret_token: str | None = None) -> None:
    """Serve the webhook with aiohttp (blocking) and register ``base_url + path`` on start."""
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
    from aiohttp import web

    bot = bot or build_bot()
    secret = secret_token or os.environ.get("TELEGRAM_WEBHOOK_SECRET") or None

    async def on_startup(bot: Bot) -> None:
        await bot.set_webhook(f"{base_url.rstrip('/')}{path}", secret_token=secret,
                              allowed_updates=dp.resolve_used_update_types())

    dp.startup.register(on_startup)
    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=secret).register(app, path=path)
    setup_application(app, dp, bot=bot)
    web.run_app(app, host=host, port=port)


__all__ = ["BotConfigurationError", "build_bot", "run_polling", "run_webhook"]
