"""``InboxWorker``: drain the inbox through a Dispatcher, with leases, retries and dead letters.

A worker claims due rows of its bot (several at once, up to ``concurrency``), feeds each one to
``dp.feed_update`` and records the outcome. While a handler runs, the lease of its row is
renewed every ``lease / 3`` seconds, so a gated handler that works for minutes is never handed
to a second worker; a worker that dies stops renewing and its rows come back after at most one
lease, flagged as a *takeover* (the quota middleware then releases the dead attempt's hold and
runs the handler again — charged at most once). Failures:

* transient (database, Redis or Telegram unreachable) — retried without limit, the delay
  doubling from ``base_delay`` up to ``max_delay``; one warning line each;
* anything else — retried the same way, then the row is dead-lettered after ``max_attempts``
  (visible in the admin, "Re-queue" puts it back).

Every update and every claim is wrapped in connection hygiene (:mod:`bot_kit.resilience`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from aiogram.methods import TelegramMethod
from aiogram.types import Update
from asgiref.sync import sync_to_async
from django.utils import timezone

from bot_kit import keys
from bot_kit.inbox import store
from bot_kit.inbox.store import Claimed
from bot_kit.resilience import Outage, backoff, describe, is_transient, recycle

if TYPE_CHECKING:
    from aiogram import Bot, Dispatcher

logger = logging.getLogger("bot_kit.inbox")

#: Update types whose answer is useless after this many seconds (Telegram's own deadline).
STALE_AFTER = {"pre_checkout_query": 10.0, "shipping_query": 10.0}
PURGE_EVERY = 3600.0


def _finish(pk: int, note: str = "") -> None:
    recycle()
    store.finish(pk, note=note)


def _retry(pk: int, token: str, error: str, delay: float, dead: bool) -> str:
    recycle()
    return store.retry(pk, token, error=error, delay=delay, dead=dead)


def _claim(bot_id: int, lease: float, limit: int) -> list[Claimed]:
    recycle()
    return store.claim(bot_id, lease=lease, limit=limit)


class InboxWorker:
    """Processes the inbox rows of ``bot`` with ``dp`` until stopped (see the module doc)."""

    def __init__(self, dp: Dispatcher, bot: Bot, *, lease: float = 30.0, concurrency: int = 8,
                 interval: float = 1.0, max_attempts: int = 5, base_delay: float = 1.0,
                 max_delay: float = 60.0, grace: float = 10.0,
                 retention: timedelta = timedelta(days=2)) -> None:
        if lease <= 0 or concurrency < 1 or max_attempts < 1:
            raise ValueError("InboxWorker needs lease > 0, concurrency >= 1, max_attempts >= 1")
        self.dp, self.bot = dp, bot
        self.lease, self.concurrency, self.interval = lease, concurrency, interval
        self.max_attempts, self.base_delay, self.max_delay = max_attempts, base_delay, max_delay
        self.grace, self.retention = grace, retention
        self.database = Outage("database (inbox)", logger)
        self._active: dict[asyncio.Task[str], Claimed] = {}
        self._settled: set[int] = set()  # rows whose outcome is being written
        self._wake = asyncio.Event()
        self._purged_at = -PURGE_EVERY

    def wake(self) -> None:
        """Look for work now (called after this process stored new updates)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and process rows until ``stop`` is set, then finish or give back the rest."""
        renewer = asyncio.create_task(self._renew_leases(stop))
        failures = 0
        try:
            while not stop.is_set():
                try:
                    exhausted = await self._claim_free_slots()
                    await self._purge_now_and_then()
                except Exception as exc:
                    failures += 1
                    self._claim_failed(exc)
                    await self._pause(stop, backoff(failures, base=0.5, cap=10.0))
                    continue
                failures = 0
                self.database.recovered()
                if len(self._active) >= self.concurrency:
                    await self._pause(stop, self.interval, busy=True)
                elif exhausted:
                    await self._pause(stop, self.interval)
        finally:
            await self._shutdown()
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def process_due(self, *, limit: int = 100) -> dict[int, str]:
        """Claim and process due rows once, waiting for them (tests and one-shot runs)."""
        claimed = await sync_to_async(_claim)(self.bot.id, self.lease, limit)
        results = await asyncio.gather(*(self._process(row) for row in claimed))
        return {row.update_id: result for row, result in zip(claimed, results, strict=True)}

    # -- claiming ------------------------------------------------------------------------------

    async def _claim_free_slots(self) -> bool:
        """Fill the free slots; True when the inbox had fewer due rows than free slots."""
        self._wake.clear()
        free = self.concurrency - len(self._active)
        if free <= 0:
            return False
        claimed = await sync_to_async(_claim)(self.bot.id, self.lease, free)
        for row in claimed:
            task = asyncio.create_task(self._process(row))
            self._active[task] = row
            task.add_done_callback(self._active.pop)
        return len(claimed) < free

    def _claim_failed(self, exc: Exception) -> None:
        if is_transient(exc):
            self.database.failed(exc)
        else:
            logger.exception("claiming inbox rows failed")

    async def _pause(self, stop: asyncio.Event, seconds: float, *, busy: bool = False) -> None:
        """Sleep until stopped, woken, ``seconds`` passed — or, when ``busy``, a slot frees."""
        waiters = [asyncio.ensure_future(stop.wait())]
        if not busy:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait([*waiters, *(self._active if busy else ())], timeout=seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _purge_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._purged_at < PURGE_EVERY:
            return
        self._purged_at = now
        deleted = await sync_to_async(store.purge_done)(older_than=self.retention)
        if deleted:
            logger.info("purged %d processed inbox rows", deleted)

    # -- processing ----------------------------------------------------------------------------

    async def _process(self, row: Claimed) -> str:
        """Feed one claimed row to the dispatcher and record the outcome; returns the state."""
        try:
            return await self._process_row(row)
        finally:
            self._settled.discard(row.pk)

    async def _process_row(self, row: Claimed) -> str:
        limit = STALE_AFTER.get(row.kind)
        if limit is not None and (timezone.now() - row.created_at).total_seconds() > limit:
            await sync_to_async(_finish)(row.pk, "expired: Telegram no longer takes an answer")
            return str(store.DONE)
        try:
            await self._feed(row)
        except asyncio.CancelledError:
            await asyncio.shield(sync_to_async(store.release)([row.pk], row.token))
            raise
        except Exception as exc:
            self._settled.add(row.pk)
            return await self._failed(row, exc)
        self._settled.add(row.pk)
        return await self._done(row)

    async def _feed(self, row: Claimed) -> None:
        await sync_to_async(recycle)()
        update = Update.model_validate(row.payload, context={"bot": self.bot})
        extra = {keys.INBOX_TAKEOVER: row.takeover, keys.INBOX_ATTEMPT: row.attempts}
        response = await self.dp.feed_update(self.bot, update, **extra)
        if isinstance(response, TelegramMethod):  # a "webhook reply" of a handler
            await self.bot(response)

    async def _done(self, row: Claimed) -> str:
        for attempt in range(1, 4):
            try:
                await sync_to_async(_finish)(row.pk)
                return str(store.DONE)
            except Exception as exc:  # the row comes back after its lease; re-runs are no-ops
                logger.warning("could not mark update %s done (%s)", row.update_id,
                               describe(exc))
                await asyncio.sleep(backoff(attempt, base=0.2, cap=2.0))
        return str(store.PENDING)

    async def _failed(self, row: Claimed, exc: Exception) -> str:
        transient = is_transient(exc)
        dead = not transient and row.attempts >= self.max_attempts
        delay = backoff(row.attempts, base=self.base_delay, cap=self.max_delay)
        if transient:
            logger.warning("update %s (%s) failed: %s; retry in %.1f s", row.update_id,
                           row.kind, describe(exc), delay)
        else:
            logger.error("update %s (%s) failed on attempt %d%s", row.update_id, row.kind,
                         row.attempts, "; dead-lettered" if dead else "", exc_info=exc)
        try:
            return await sync_to_async(_retry)(row.pk, row.token, describe(exc), delay, dead)
        except Exception as again:
            logger.warning("could not reschedule update %s (%s); its lease will expire",
                           row.update_id, describe(again))
            return str(store.PENDING)

    # -- leases --------------------------------------------------------------------------------

    async def _renew_leases(self, stop: asyncio.Event) -> None:
        period = max(self.lease / 3, 0.05)
        while True:
            await asyncio.sleep(period)
            by_token: dict[str, list[int]] = {}
            for row in list(self._active.values()):
                by_token.setdefault(row.token, []).append(row.pk)
            for token, pks in by_token.items():
                try:
                    kept = await sync_to_async(store.renew)(pks, token, lease=self.lease)
                except Exception as exc:
                    logger.warning("could not renew inbox leases (%s)", describe(exc))
                    continue
                running = {row.pk for task, row in self._active.items() if not task.done()}
                for lost in (set(pks) - kept - self._settled) & running:
                    logger.warning("lease of inbox row %s was lost (a slow handler?)", lost)

    async def _shutdown(self) -> None:
        if not self._active:
            return
        logger.info("waiting up to %.0f s for %d update(s) in progress", self.grace,
                    len(self._active))
        _, unfinished = await asyncio.wait(list(self._active), timeout=self.grace)
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.gather(*unfinished, return_exceptions=True)


__all__ = ["STALE_AFTER", "InboxWorker"]
