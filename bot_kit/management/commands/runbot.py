"""``runbot``: run the bot with the inbox (polling, a webhook server, or inbox workers only).

    python manage.py runbot                                   # long polling
    python manage.py runbot --webhook https://bot.example.com # aiohttp webhook server + workers
    python manage.py runbot --workers-only                    # drain the inbox (Django view)

The Dispatcher comes from ``--dispatcher`` or the ``BOT_KIT_DISPATCHER`` setting: the dotted
path of a ``Dispatcher`` or of a function returning one. Stops gracefully on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram import Dispatcher
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string

from bot_kit.inbox.webhook import WebhookSecretMissing
from bot_kit.runner import (
    BotConfigurationError,
    Mode,
    WebhookOptions,
    WorkerOptions,
    build_bot,
    run_bot,
)


def load_dispatcher(path: str | None) -> Any:
    """The Dispatcher named by ``path`` (``pkg.module.name``; a factory is called)."""
    path = path or getattr(settings, "BOT_KIT_DISPATCHER", None)
    if not path:
        raise CommandError("Name the bot's Dispatcher: --dispatcher pkg.module.factory or the "
                           "BOT_KIT_DISPATCHER setting")
    try:
        target = import_string(path.replace(":", "."))
    except ImportError as exc:
        raise CommandError(f"Cannot import {path}: {exc}") from exc
    dp = target if isinstance(target, Dispatcher) else target()
    if not isinstance(dp, Dispatcher):
        raise CommandError(f"{path} did not give an aiogram Dispatcher")
    return dp


class Command(BaseCommand):
    help = ("Run the Telegram bot through the durable inbox: long polling (default), a webhook "
            "server (--webhook) or inbox workers only (--workers-only).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dispatcher", help="Dotted path of the Dispatcher or its factory "
                                                 "(default: the BOT_KIT_DISPATCHER setting).")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--webhook", metavar="BASE_URL",
                          help="Serve a webhook and register BASE_URL + --path with Telegram.")
        mode.add_argument("--workers-only", action="store_true",
                          help="Only process the inbox (updates arrive through the Django "
                               "view of bot_kit.urls or another process).")
        parser.add_argument("--set-webhook", metavar="URL",
                            help="With --workers-only: register this full webhook URL.")
        parser.add_argument("--path", default="/telegram/webhook", help="Webhook path.")
        parser.add_argument("--host", default="127.0.0.1", help="Listen address.")
        parser.add_argument("--port", type=int, default=8080, help="Webhook listen port.")
        parser.add_argument("--allow-no-secret", action="store_true",
                            help="Serve a webhook without TELEGRAM_WEBHOOK_SECRET (unsafe).")
        parser.add_argument("--health-port", type=int, default=None,
                            help="Serve GET /healthz (readiness) on this port.")
        parser.add_argument("--lease", type=float, default=30.0,
                            help="Seconds an update is leased to a worker (renewed while it "
                                 "runs; a dead worker's updates return after it).")
        parser.add_argument("--concurrency", type=int, default=8,
                            help="Updates processed at once by this process.")
        parser.add_argument("--interval", type=float, default=1.0,
                            help="Seconds between looks at the inbox for other processes' rows.")
        parser.add_argument("--no-refund-worker", action="store_true",
                            help="Do not work the refund outbox in this process.")
        parser.add_argument("--refund-lease", type=float, default=60.0,
                            help="Lease of a refund being sent (renewed while it runs).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["set_webhook"] and not options["workers_only"]:
            raise CommandError("--set-webhook goes with --workers-only")
        self._configure_logging(options["verbosity"])
        dp = load_dispatcher(options["dispatcher"])
        try:
            asyncio.run(self._run(dp, options))
        except (BotConfigurationError, WebhookSecretMissing, ValueError) as exc:
            raise CommandError(str(exc)) from exc

    async def _run(self, dp: Any, options: dict[str, Any]) -> None:
        mode: Mode = "webhook" if options["webhook"] else (
            "workers" if options["workers_only"] else "polling")
        webhook = WebhookOptions(base_url=options["webhook"], path=options["path"],
                                 host=options["host"], port=options["port"],
                                 allow_no_secret=options["allow_no_secret"],
                                 register_url=options["set_webhook"])
        workers = WorkerOptions(lease=options["lease"], concurrency=options["concurrency"],
                                interval=options["interval"],
                                refunds=not options["no_refund_worker"],
                                refund_lease=options["refund_lease"])
        await run_bot(dp, build_bot(), mode=mode, webhook=webhook, workers=workers,
                      health_port=options["health_port"])

    def _configure_logging(self, verbosity: int) -> None:
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO if verbosity >= 1 else logging.WARNING,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
