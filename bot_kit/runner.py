"""Run a bot against Telegram, a self-hosted Bot API server or a loopback fake.

``TELEGRAM_BOT_TOKEN`` names the bot; ``TELEGRAM_API_SERVER`` (optional) is the base URL of
another Bot API server (``http://127.0.0.1:8081`` for ``telegram-bot-api --local``, or the URL of
``bot_kit.testing.FakeBotAPIServer``), used through aiogram's ``TelegramAPIServer.from_base``.

:func:`run_bot` is the one runtime behind ``python manage.py runbot``, :func:`run_polling` and
:func:`run_webhook`: a receiver (long polling, a webhook server, or none when another process —
the Django view — receives), the inbox workers and the refund outbox worker, all stopped
gracefully by ``SIGINT``/``SIGTERM`` (a second signal stops at once). Every update is committed
to the inbox before Telegram is told it arrived; see docs/delivery.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web

from bot_kit.health import aiohttp_readiness

logger = logging.getLogger("bot_kit.runner")

Mode = Literal["polling", "webhook", "workers"]


class BotConfigurationError(RuntimeError):
    """``TELEGRAM_BOT_TOKEN`` is missing."""


def build_bot(token: str | None = None, *, api_server: str | None = None,
              default: DefaultBotProperties | None = None) -> Bot:
    """A ``Bot`` from arguments or the environment (``TELEGRAM_BOT_TOKEN``,
    ``TELEGRAM_API_SERVER``)."""
    token = token or os.environ.get("TELEGRAM_BOT_TOKEN", "").strip()
    if not token:
        raise BotConfigurationError("Set TELEGRAM_BOT_TOKEN (the token from @BotFather)")
    base = api_server or os.environ.get("TELEGRAM_API_SERVER", "").strip()
    session = AiohttpSession(api=TelegramAPIServer.from_base(base)) if base else None
    return Bot(token, session=session, default=default)


@dataclass(frozen=True)
class WorkerOptions:
    """How the process drains the inbox and the refund outbox (``runbot`` flags)."""

    lease: float = 30.0
    concurrency: int = 8
    interval: float = 1.0
    max_attempts: int = 5
    grace: float = 10.0
    refunds: bool = True
    refund_interval: float = 5.0
    refund_lease: float = 60.0


@dataclass(frozen=True)
class WebhookOptions:
    """Where the webhook is served and registered; ``secret`` defaults to the environment."""

    base_url: str | None = None
    path: str = "/telegram/webhook"
    host: str = "127.0.0.1"
    port: int = 8080
    secret: str | None = None
    allow_no_secret: bool = False
    register_url: str | None = None

    def url(self) -> str | None:
        if self.register_url:
            return self.register_url
        return f"{self.base_url.rstrip('/')}{self.path}" if self.base_url else None


async def run_bot(dp: Dispatcher, bot: Bot | None = None, *, mode: Mode = "polling",
                  webhook: WebhookOptions | None = None, workers: WorkerOptions | None = None,
                  health_port: int | None = None, stop: asyncio.Event | None = None,
                  handle_signals: bool = True) -> None:
    """Receive (``polling`` / ``webhook`` / nothing for ``workers``) and process until stopped.

    A webhook without a secret raises ``WebhookSecretMissing`` before anything starts.
    """
    from bot_kit.inbox.webhook import webhook_secret  # app registry: the inbox loads bot_kit.models

    webhook = webhook or WebhookOptions()
    secret = None
    if mode == "webhook" or webhook.register_url:
        secret = webhook_secret(webhook.secret, allow_no_secret=webhook.allow_no_secret)
        if secret is None:
            logger.warning("webhook without a secret token: anyone who finds its URL can post "
                           "forged updates (explicit opt-out)")
    bot = bot or build_bot()
    stop = stop or asyncio.Event()
    if handle_signals:
        _install_signal_handlers(stop)
    try:
        await _run(dp, bot, mode, webhook, secret, workers or WorkerOptions(), health_port, stop)
    finally:
        await bot.session.close()


async def _run(dp: Dispatcher, bot: Bot, mode: Mode, webhook: WebhookOptions,
               secret: str | None, options: WorkerOptions, health_port: int | None,
               stop: asyncio.Event) -> None:
    from bot_kit.inbox.polling import InboxPoller  # app registry: the inbox loads bot_kit.models
    from bot_kit.inbox.worker import InboxWorker  # app registry: the inbox loads bot_kit.models

    worker = InboxWorker(dp, bot, lease=options.lease, concurrency=options.concurrency,
                         interval=options.interval, max_attempts=options.max_attempts,
                         grace=options.grace)
    me = await bot.me()  # checks the token before anything starts
    if mode == "polling":
        await bot.delete_webhook(drop_pending_updates=False)
    data = {"dispatcher": dp, "bots": [bot], **dp.workflow_data}
    await dp.emit_startup(bot=bot, **data)
    jobs: list[Awaitable[Any]] = [worker.run(stop)]
    if options.refunds:
        jobs.append(_refund_worker(bot, options, stop))
    if mode == "polling":
        poller = InboxPoller(bot, allowed_updates=dp.resolve_used_update_types(),
                             on_stored=worker.wake)
        jobs.append(poller.run(stop))
    elif mode == "webhook":
        jobs.append(_serve_webhook(bot, webhook, secret, worker.wake, stop))
    if health_port is not None:
        jobs.append(_serve_health(webhook.host, health_port, stop))
    if webhook.url() and mode != "polling":
        jobs.append(_register_webhook(dp, bot, str(webhook.url()), secret))
    logger.info("bot @%s (id %s) running: %s", me.username, bot.id, mode)
    try:
        await _until_stopped(jobs, stop)
    finally:
        await dp.emit_shutdown(bot=bot, **data)
        logger.info("bot %s stopped", bot.id)


async def _until_stopped(jobs: list[Awaitable[Any]], stop: asyncio.Event) -> None:
    """Run ``jobs`` until ``stop`` is set; a job that crashes stops the others too."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:  # a second signal: no grace
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            raise result


async def _register_webhook(dp: Dispatcher, bot: Bot, url: str, secret: str | None) -> None:
    """``setWebhook`` once the receiver is starting (a failure stops the process)."""
    await bot.set_webhook(url, secret_token=secret, allowed_updates=dp.resolve_used_update_types())
    logger.info("webhook registered: %s", url)


async def _refund_worker(bot: Bot, options: WorkerOptions, stop: asyncio.Event) -> None:
    from bot_kit.payments.refunds import RefundOutbox  # app registry: loads bot_kit.models

    await RefundOutbox(bot, lease=options.refund_lease).run(interval=options.refund_interval,
                                                            stop=stop)


async def _serve_webhook(bot: Bot, webhook: WebhookOptions, secret: str | None,
                         wake: Any, stop: asyncio.Event) -> None:
    from bot_kit.inbox.webhook import webhook_app  # app registry: the inbox loads bot_kit.models

    app = webhook_app(bot.id, path=webhook.path, secret=secret, on_stored=wake)
    await _serve(app, webhook.host, webhook.port, stop)


async def _serve_health(host: str, port: int, stop: asyncio.Event) -> None:
    app = web.Application()
    app.router.add_get("/healthz", aiohttp_readiness)
    await _serve(app, host, port, stop)


async def _serve(app: Any, host: str, port: int, stop: asyncio.Event) -> None:
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        logger.info("listening on http://%s:%s", host, port)
        await stop.wait()
    finally:
        await runner.cleanup()


def _install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM set ``stop`` (graceful); a second one cancels the main task."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set() and main is not None:
            logger.warning("%s again: stopping now", sig.name)
            main.cancel()
            return
        logger.info("%s received: stopping (again to force)", sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)


async def run_polling(dp: Dispatcher, bot: Bot | None = None, *,
                      workers: WorkerOptions | None = None, stop: asyncio.Event | None = None,
                      handle_signals: bool = True) -> None:
    """Long-poll through the inbox until stopped (see :func:`run_bot`)."""
    await run_bot(dp, bot, mode="polling", workers=workers, stop=stop,
                  handle_signals=handle_signals)


def run_webhook(dp: Dispatcher, bot: Bot | None = None, *, base_url: str,
                path: str = "/telegram/webhook", host: str = "127.0.0.1", port: int = 8080,
                secret_token: str | None = None, allow_no_secret: bool = False,
                workers: WorkerOptions | None = None) -> None:
    """Serve the webhook through the inbox (blocking) and register ``base_url + path``.

    Refuses to start without a secret (``secret_token`` or ``TELEGRAM_WEBHOOK_SECRET``) unless
    ``allow_no_secret`` is true.
    """
    options = WebhookOptions(base_url=base_url, path=path, host=host, port=port,
                             secret=secret_token, allow_no_secret=allow_no_secret)
    asyncio.run(run_bot(dp, bot, mode="webhook", webhook=options, workers=workers))


__all__ = [
    "BotConfigurationError",
    "WebhookOptions",
    "WorkerOptions",
    "build_bot",
    "run_bot",
    "run_polling",
    "run_webhook",
]
