"""``billable_refunds``: work the refund outbox once, or keep working it (``--loop``)."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from bot_kit.management.commands import _bot


class Command(BaseCommand):
    help = "Send due refundStarPayment calls from the durable refund outbox."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true",
                            help="Keep working the outbox until interrupted.")
        parser.add_argument("--interval", type=float, default=5.0,
                            help="Seconds between passes with --loop (default 5).")
        parser.add_argument("--limit", type=int, default=50,
                            help="Rows per pass (default 50).")

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(self._run(loop=options["loop"], interval=options["interval"],
                              limit=options["limit"]))

    async def _run(self, *, loop: bool, interval: float, limit: int) -> None:
        from bot_kit.payments.refunds import RefundOutbox

        bot = _bot.command_bot()
        try:
            outbox = RefundOutbox(bot)
            if loop:
                await outbox.run(interval=interval)
                return
            results = await outbox.process_due(limit=limit)
            for request_id, state in results.items():
                self.stdout.write(f"refund #{request_id}: {state}")
            self.stdout.write(f"Done. Attempted: {len(results)}.")
        finally:
            await bot.session.close()
