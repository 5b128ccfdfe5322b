"""``billable_reconcile_stars``: compare recorded Stars payments with getStarTransactions."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from bot_kit.management.commands import _bot


class Command(BaseCommand):
    help = ("Compare recorded Telegram Stars payments with the bot's Stars transactions; "
            "exit with an error when they differ.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None,
                            help="Only compare charges of the last N days.")

    def handle(self, *args: Any, **options: Any) -> None:
        from bot_kit.payments.reconcile import reconcile

        days = options["days"]
        if days is not None and days <= 0:
            raise CommandError("--days must be a positive number")
        since = timezone.now() - timedelta(days=days) if days else None

        async def run() -> Any:
            bot = _bot.command_bot()
            try:
                return await reconcile(bot, since=since)
            finally:
                await bot.session.close()

        differences = asyncio.run(run())
        for difference in differences:
            self.stdout.write(difference.describe())
        if differences:
            raise CommandError(f"{len(differences)} difference(s) found.")
        self.stdout.write("OK: recorded payments match Telegram.")
