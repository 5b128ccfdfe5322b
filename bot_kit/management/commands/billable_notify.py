"""``billable_notify``: scan for low balances and expiring batches, then message the customers
(``bot_kit.alerts``). Schedule it (e.g. hourly); it replaces ``billable_alerts`` for a bot."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from bot_kit.alerts import AlertSender
from bot_kit.management.commands import _bot
from bot_kit.resilience import outage_is_command_error


class Command(BaseCommand):
    help = "Record new low-balance / expiry notices and send them as bot messages."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=500, help="Messages per run.")
        parser.add_argument("--dispatcher", default=None,
                            help="Dotted path of the bot's Dispatcher (default: the runbot "
                                 "setting).")

    @outage_is_command_error
    def handle(self, *args: Any, **options: Any) -> None:
        counts = asyncio.run(self._run(options["limit"], options["dispatcher"]))
        self.stdout.write("Low balance: {low_balance}. Expiring: {expiring}. Sent: {sent}. "
                          "Failed: {failed}.".format(**counts))

    async def _run(self, limit: int, dispatcher: str | None) -> dict[str, int]:
        config = _bot.command_config(dispatcher)
        bot = _bot.command_bot()
        try:
            return await AlertSender(bot, config).scan_and_send(limit=limit)
        finally:
            await bot.session.close()
