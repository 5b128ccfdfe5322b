"""One bot of ``common.py`` as its own process: ``python -m tests.bot_kit.multibot.bot_process
TOKEN WALLET API_URL`` polls the loopback Bot API at ``API_URL`` and works its refund outbox,
on the database of ``DATABASE_URL``, until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys


async def main(token: str, wallet: str, api_url: str) -> None:
    from aiogram import Bot, Dispatcher
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    from bot_kit.config import bot_id_from_token
    from bot_kit.payments.refunds import attach_refund_worker
    from bot_kit.setup import setup_billing
    from tests.bot_kit.multibot.common import two_configs

    config = {c.bot_id: c for c in two_configs(wallet)}[bot_id_from_token(token)]
    dp = Dispatcher()
    setup_billing(dp, config)
    attach_refund_worker(dp, interval=0.1)
    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_url)))
    try:
        await dp.start_polling(bot, handle_signals=True, polling_timeout=1)
    finally:
        await bot.session.close()


if __name__ == "__main__":
    import django

    logging.basicConfig(level=logging.WARNING)
    django.setup()
    asyncio.run(main(*sys.argv[1:4]))
