"""``billable_refunds``: work the refund outbox once, or keep working it (``--loop``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from bot_kit.management.commands import _bot
from bot_kit.payments.refunds import RefundOutbox


class Command(BaseCommand):
    help = "Send due refundStarPayment calls from the durable refund outbox."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true",
                            help="Keep working the outbox until interrupted.")
        parser.add_argument("--interval", type=float, default=5.0,
                            help="Seconds between passes with --loop (default 5).")
        parser.add_argument("--limit", type=int, default=50,
                            help="Rows per pass (default 50).")
        parser.add_argument("--lease", type=float, default=60.0,
                            help="Seconds a refund in flight is leased to this worker; "
                                 "renewed while Telegram answers (default 60).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["loop"] and not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        asyncio.run(self._run(loop=options["loop"], interval=options["interval"],
                              limit=options["limit"], lease=options["lease"]))

    async def _run(self, *, loop: bool, interval: float, limit: int, lease: float) -> None:
        bot = _bot.command_bot()
        try:
            outbox = RefundOutbox(bot, lease=lease)
            if loop:
                await outbox.run(interval=interval, stop=_stop_on_signals())
                return
            results = await outbox.process_due(limit=limit)
            for request_id, state in results.items():
                self.stdout.write(f"refund #{request_id}: {state}")
            self.stdout.write(f"Done. Attempted: {len(results)}.")
        finally:
            await bot.session.close()


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT/SIGTERM, so ``--loop`` finishes the refund in flight and exits."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop
