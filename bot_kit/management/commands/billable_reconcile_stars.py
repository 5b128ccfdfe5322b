"""``billable_reconcile_stars``: compare recorded Stars payments with getStarTransactions.

``--repair`` lists the repairs it would make (dry run); ``--repair --apply`` makes them through
the exactly-once payment paths (``bot_kit.payments.repair``). The signing secrets come from the
bot's ``BillingConfig`` (the Dispatcher of ``--dispatcher`` / ``BOT_KIT_DISPATCHER``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from bot_kit.management.commands import _bot
from bot_kit.payments.reconcile import (
    compare_charges,
    fetch_star_transactions,
    recorded_charges,
    telegram_charges,
)
from bot_kit.payments.repair import apply_repair, plan_repairs
from bot_kit.resilience import outage_is_command_error


class Command(BaseCommand):
    help = ("Compare recorded Telegram Stars payments with the bot's Stars transactions; "
            "exit with an error when they differ. --repair plans repairs, --apply makes them.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None,
                            help="Only compare charges of the last N days.")
        parser.add_argument("--repair", action="store_true",
                            help="List the repairs for the differences (dry run).")
        parser.add_argument("--apply", action="store_true",
                            help="With --repair: make the repairs.")
        parser.add_argument("--dispatcher", help="Dotted path of the bot's Dispatcher (for its "
                                                 "signing secrets); default BOT_KIT_DISPATCHER.")

    @outage_is_command_error
    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        if days is not None and days <= 0:
            raise CommandError("--days must be a positive number")
        if options["apply"] and not options["repair"]:
            raise CommandError("--apply goes with --repair")
        since = timezone.now() - timedelta(days=days) if days else None
        differences, transactions = asyncio.run(self._fetch(since))
        for difference in differences:
            self.stdout.write(difference.describe())
        if options["repair"] and differences:
            self._repair(differences, transactions, apply=options["apply"],
                         dispatcher=options["dispatcher"])
        if differences:
            raise CommandError(f"{len(differences)} difference(s) found.")
        self.stdout.write("OK: recorded payments match Telegram.")

    async def _fetch(self, since: Any) -> tuple[list[Any], list[Any]]:
        bot = _bot.command_bot()
        try:
            transactions = await fetch_star_transactions(bot, since=since)
        finally:
            await bot.session.close()
        bot_id = getattr(bot, "id", None)
        self._bot_id = bot_id if isinstance(bot_id, int) else None
        ours = await sync_to_async(recorded_charges)(since, bot_id=self._bot_id)
        return compare_charges(ours, telegram_charges(transactions)), transactions

    def _repair(self, differences: list[Any], transactions: list[Any], *, apply: bool,
                dispatcher: str | None) -> None:
        plan = plan_repairs(differences, transactions)
        if not apply:
            for repair in plan:
                self.stdout.write(f"[DRY] {repair.describe()}")
            self.stdout.write(f"{len(plan)} repair(s) planned; run again with --apply.")
            return
        config = _bot.command_config(dispatcher)
        for repair in plan:
            outcome = apply_repair(repair, config.signing_secrets,
                                   provider=config.telegram_provider,
                                   bot_id=getattr(self, "_bot_id", None))
            self.stdout.write(f"{repair.describe()} -> {outcome}")
        self.stdout.write(f"{len(plan)} repair(s) made.")
