"""Run the demo bot for real: long polling (default) or a webhook, via ``bot_kit.runner``.

    TELEGRAM_BOT_TOKEN=123:ABC python -m examples.demo_bot                 # polling
    TELEGRAM_BOT_TOKEN=123:ABC python -m examples.demo_bot --webhook https://bot.example.com

``TELEGRAM_API_SERVER`` (e.g. ``http://127.0.0.1:8081``) points the bot at a self-hosted
``telegram-bot-api`` server instead of ``api.telegram.org``. Refunds requested with ``/refund``
are delivered by the durable outbox worker that runs next to the polling loop (with webhooks, run
``python manage.py billable_refunds --loop`` as its own process).
"""

from __future__ import annotations

import asyncio
import contextlib

from aiogram import Bot, Dispatcher

from bot_kit.runner import run_polling


async def _refund_worker(bot: Bot, stop: asyncio.Event) -> None:
    from bot_kit.payments.refunds import RefundOutbox

    await RefundOutbox(bot).run(stop=stop)


async def poll_with_refunds(dp: Dispatcher, bot: Bot) -> None:
    """Long polling plus the refund outbox worker, until interrupted."""
    stop = asyncio.Event()
    worker = asyncio.create_task(_refund_worker(bot, stop))
    try:
        await run_polling(dp, bot)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await bot.session.close()


__all__ = ["poll_with_refunds"]
