"""Run the demo bot for real, and stop it cleanly: ``serve`` owns SIGINT and SIGTERM.

    TELEGRAM_BOT_TOKEN=123:ABC python -m examples.demo_bot                 # polling
    TELEGRAM_BOT_TOKEN=123:ABC python -m examples.demo_bot --webhook https://bot.example.com

The bot runs through ``bot_kit.runner`` (the durable inbox, its workers and the refund outbox
worker in one process). ``serve`` runs it next to the demo's web server (uvicorn: API and admin)
in one event loop; the first SIGINT/SIGTERM stops both gracefully, a second one at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable
from typing import Any

from aiogram import Bot, Dispatcher

from bot_kit.runner import run_polling


def own_signals(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM set ``stop``; a second signal cancels the running task."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and main is not None:
            main.cancel()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)


async def serve_web(server: Any, stop: asyncio.Event) -> None:
    """Run a ``uvicorn.Server`` until ``stop`` is set (uvicorn must not take the signals)."""
    server.capture_signals = contextlib.nullcontext  # signals are ours (own_signals)
    task = asyncio.create_task(server.serve())
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    waiter.cancel()
    await task
    stop.set()


async def serve(*, dp: Dispatcher | None = None, bot: Bot | None = None,
                web: Any = None) -> None:
    """The bot (when ``dp`` is given) and the web server (``web``) until a signal arrives."""
    stop = asyncio.Event()
    own_signals(stop)
    jobs: list[Awaitable[Any]] = []
    if dp is not None:
        jobs.append(run_polling(dp, bot, stop=stop, handle_signals=False))
    if web is not None:
        jobs.append(serve_web(web, stop))
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


__all__ = ["own_signals", "serve", "serve_web"]
