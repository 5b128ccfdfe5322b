"""``billable_refunds``: work the refund outbox once, or keep working it (``--loop``).

The bot's ``BillingConfig`` (the Dispatcher of ``--dispatcher`` / ``BOT_KIT_DISPATCHER``, as for
``runbot``) is used when one is configured, so a refund this worker completes is told to the user
and the host exactly once, as with the other workers. Without one, refunds are still made, and a
single warning says nobody is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from bot_kit.config import BillingConfig
from bot_kit.management.commands import _bot
from bot_kit.payments.refunds import RefundOutbox
from bot_kit.resilience import outage_is_command_error

logger = logging.getLogger("bot_kit.refunds")


class Command(BaseCommand):
    help = "Send due refundStarPayment calls from the durable refund outbox."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dispatcher",
                            help="Dotted path of the bot's Dispatcher or its factory, whose "
                                 "BillingConfig tells users about their refunds (default: the "
                                 "BOT_KIT_DISPATCHER setting).")
        parser.add_argument("--loop", action="store_true",
                            help="Keep working the outbox until interrupted.")
        parser.add_argument("--interval", type=float, default=5.0,
                            help="Seconds between passes with --loop (default 5).")
        parser.add_argument("--limit", type=int, default=50,
                            help="Rows per pass (default 50).")
        parser.add_argument("--lease", type=float, default=60.0,
                            help="Seconds a refund in flight is leased to this worker; "
                                 "renewed while Telegram answers (default 60).")

    @outage_is_command_error
    def handle(self, *args: Any, **options: Any) -> None:
        if options["loop"] and not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        config = _host_config(options.get("dispatcher"))
        asyncio.run(self._run(loop=options["loop"], interval=options["interval"],
                              limit=options["limit"], lease=options["lease"], config=config))

    async def _run(self, *, loop: bool, interval: float, limit: int, lease: float,
                   config: BillingConfig | None = None) -> None:
        bot = _bot.command_bot()
        try:
            outbox = RefundOutbox(bot, lease=lease, config=config)
            if loop:
                await outbox.run(interval=interval, stop=_stop_on_signals())
                return
            results = await outbox.process_due(limit=limit)
            for request_id, state in results.items():
                self.stdout.write(f"refund #{request_id}: {state}")
            self.stdout.write(f"Done. Attempted: {len(results)}.")
        finally:
            await bot.session.close()


def _host_config(dispatcher: str | None) -> BillingConfig | None:
    """The host bot's ``BillingConfig``, or ``None`` (logged once) when none can be found."""
    try:
        return _bot.command_config(dispatcher)
    except Exception as exc:  # no setting, import error, a factory that fails, no setup_billing
        logger.warning("billable_refunds: no bot BillingConfig (%s); refunds are made, but "
                       "users and on_refunded are not told", exc)
        return None


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT/SIGTERM, so ``--loop`` finishes the refund in flight and exits."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop
