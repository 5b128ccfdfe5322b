"""A host bot of the peer suite as its own process: ``python -m tests.bot_kit.peer_process
API_URL`` polls the loopback Bot API at ``API_URL`` (through ``TELEGRAM_API_SERVER``, as a
deployed bot would) on the database of ``DATABASE_URL``, until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import sys


async def main(api_url: str) -> None:
    from aiogram import Dispatcher

    from bot_kit import BillingConfig, setup_billing
    from bot_kit.runner import build_bot
    from tests.bot_kit.peer import SECRET

    os.environ["TELEGRAM_API_SERVER"] = api_url
    dp = Dispatcher()
    setup_billing(dp, BillingConfig(offers=("PACK_10",), signing_secrets=(SECRET,)))
    bot = build_bot("42:TEST")
    try:
        await dp.start_polling(bot, handle_signals=True, polling_timeout=1)
    finally:
        await bot.session.close()


if __name__ == "__main__":
    import django

    logging.basicConfig(level=logging.WARNING)
    django.setup()
    asyncio.run(main(sys.argv[1]))
