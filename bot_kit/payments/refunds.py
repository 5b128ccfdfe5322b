"""Refunds through a durable outbox of ``refundStarPayment`` calls.

``request_refund`` writes a ``RefundRequest`` row (one per payment). ``RefundOutbox`` works the
due rows one at a time: it claims a row in a short transaction (a lease moves
``next_attempt_at`` ahead and a token marks the holder, so a second worker skips it), calls the
Bot API outside any transaction while a heartbeat renews the lease, then records the outcome.
Success — or Telegram saying ``CHARGE_ALREADY_REFUNDED`` — marks the row done and reverses the
grant with ``billing.refund_order`` (``OrderService.refund_paid_order``) in the same
transaction, exactly once. ``429`` waits the ``retry_after`` Telegram asked for; other transient
failures back off exponentially; a permanent ``400`` or too many attempts marks the row
``failed`` (visible in the admin).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter
from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from bot_kit import billing
from bot_kit.events import RefundEvent, payment_refunded, send_on_commit
from bot_kit.middlewares.identity import billing_config
from bot_kit.models import RefundRequest, StarSubscription, TelegramPayment
from bot_kit.notices import after_refund
from bot_kit.payments.errors import PaymentNotFound, RefundNotAllowed
from bot_kit.resilience import Outage, arecycle, backoff, describe, is_transient, recycle

if TYPE_CHECKING:
    from aiogram import Bot, Dispatcher

    from bot_kit.config import BillingConfig

logger = logging.getLogger("bot_kit.payments")
ALREADY_REFUNDED = "CHARGE_ALREADY_REFUNDED"


def _find_payment(reference: str) -> TelegramPayment:
    payment = TelegramPayment.objects.select_for_update().filter(charge_id=reference).first()
    if payment is None and reference.isdigit() and len(reference) < 19:
        payment = (TelegramPayment.objects.select_for_update()
                   .filter(order_id=int(reference)).order_by("-created_at", "-id").first())
    if payment is None:
        raise PaymentNotFound(f"No Telegram payment for {reference!r}")
    return payment


def request_refund(reference: str | int, *, reason: str = "",
                   requested_by: str = "") -> RefundRequest:
    """Queue the refund of a payment named by its charge id or its order id (idempotent).

    A pending or done request is returned as is; a failed one is re-armed for a new attempt.
    Raises ``PaymentNotFound`` or ``RefundNotAllowed`` (already refunded).
    """
    reference = str(reference or "").strip()
    if not reference:
        raise PaymentNotFound("A charge id or order id is required")
    with transaction.atomic():
        payment = _find_payment(reference)
        if payment.status == TelegramPayment.Status.REFUNDED:
            raise RefundNotAllowed("Payment already refunded")
        refund, created = RefundRequest.objects.select_for_update().get_or_create(
            payment=payment, defaults={"reason": reason[:255],
                                       "requested_by": requested_by[:64]})
        if not created and refund.state == RefundRequest.State.FAILED:
            refund.state = RefundRequest.State.PENDING
            refund.next_attempt_at = timezone.now()
            refund.save(update_fields=["state", "next_attempt_at"])
    return refund


async def arequest_refund(reference: str | int, *, reason: str = "",
                          requested_by: str = "") -> RefundRequest:
    """Async twin of ``request_refund``."""
    return await sync_to_async(request_refund)(reference, reason=reason,
                                               requested_by=requested_by)


def refund_event(payment: TelegramPayment) -> RefundEvent:
    """The ``RefundEvent`` of a refunded ``payment``."""
    sku = ""
    if payment.subscription_id is not None:
        sku = StarSubscription.objects.filter(pk=payment.subscription_id).values_list(
            "sku", flat=True).first() or ""
    return RefundEvent(telegram_user_id=payment.telegram_user_id, user_id=payment.user_id,
                       charge_id=payment.charge_id, order_id=payment.order_id,
                       currency=payment.currency, total_amount=payment.total_amount,
                       subscription_sku=sku)


def reverse_payment(payment: TelegramPayment, *, reason: str = "refund") -> bool:
    """Mark ``payment`` refunded and revoke what it granted; False when already done.

    Call inside a transaction with ``payment`` locked. The ``payment_refunded`` signal is sent
    once, after the commit.
    """
    if payment.status == TelegramPayment.Status.REFUNDED:
        return False
    granted = payment.status == TelegramPayment.Status.CONFIRMED
    if granted and payment.order_id is not None:
        if not billing.refund_order(payment.order_id, reason=reason):
            logger.info("order %s was not paid any more; nothing to revoke", payment.order_id)
    payment.status = TelegramPayment.Status.REFUNDED
    payment.refunded_at = timezone.now()
    payment.save(update_fields=["status", "refunded_at"])
    if granted and payment.subscription_id is not None:
        _shorten_subscription(payment, payment.subscription_id)
    send_on_commit(payment_refunded, TelegramPayment, refund_event(payment))
    return True


def _shorten_subscription(refunded: TelegramPayment, subscription_id: int) -> None:
    """The subscription is paid until the latest expiry of its charges still confirmed (now,
    when none is left): ``/subscribe`` and the paywall never show a refunded period as paid."""
    paid_until = TelegramPayment.objects.filter(
        subscription_id=subscription_id, status=TelegramPayment.Status.CONFIRMED,
    ).aggregate(end=Max("subscription_expires_at"))["end"]
    StarSubscription.objects.filter(pk=subscription_id).update(
        expires_at=paid_until or refunded.refunded_at, updated_at=timezone.now())


def record_refunded(charge_id: str) -> TelegramPayment | None:
    """Handle a ``refunded_payment`` service message (idempotent)."""
    return record_refunded_once(charge_id)[0]


def record_refunded_once(charge_id: str) -> tuple[TelegramPayment | None, RefundEvent | None]:
    """``record_refunded`` that also says whether this call reversed the payment: the event
    is ``None`` for a redelivered message (or a refund the outbox already recorded)."""
    event = None
    with transaction.atomic():
        payment = TelegramPayment.objects.select_for_update().filter(charge_id=charge_id).first()
        if payment is None:
            logger.warning("refunded_payment for unknown charge %s", charge_id)
            return None, None
        if reverse_payment(payment, reason="refunded_payment"):
            event = refund_event(payment)
        RefundRequest.objects.filter(payment=payment).exclude(
            state=RefundRequest.State.DONE).update(state=RefundRequest.State.DONE,
                                                   done_at=timezone.now(),
                                                   last_error="refunded_payment received")
    return payment, event


async def arecord_refunded(charge_id: str) -> TelegramPayment | None:
    """Async twin of ``record_refunded``."""
    return await sync_to_async(record_refunded)(charge_id)


async def arecord_refunded_once(charge_id: str
                                ) -> tuple[TelegramPayment | None, RefundEvent | None]:
    """Async twin of ``record_refunded_once``."""
    return await sync_to_async(record_refunded_once)(charge_id)


@dataclass(frozen=True)
class RefundJob:
    """A claimed outbox row: what the Bot API call needs, and the lease token that holds it."""

    request_id: int
    charge_id: str
    telegram_user_id: int
    attempts: int
    token: str = ""


class RefundOutbox:
    """Works the refund outbox; ``clock`` is injectable so tests move time instead of sleeping.

    One row is claimed at a time, under a lease of ``lease`` seconds that a heartbeat renews
    every ``lease / 3`` seconds while ``refundStarPayment`` is in flight: however slow Telegram
    is, no second worker calls it for the same charge while this one is alive.
    """

    def __init__(self, bot: Bot, *, clock: Callable[[], datetime] = timezone.now,
                 base_delay: float = 5.0, max_delay: float = 3600.0, max_attempts: int = 10,
                 lease: float = 60.0, config: BillingConfig | None = None) -> None:
        self.bot = bot
        #: With a config, a refund that reverses a payment is told to the user and the host
        #: (``on_refunded``) and cancels its Stars subscription at Telegram.
        self.config = config
        self.clock = clock
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.lease = lease
        #: Only the payments this bot received (or of no known bot) are refunded by it: with
        #: several bots on one database, each bot's worker refunds its own charges.
        bot_id = getattr(bot, "id", None)
        self.bot_id = bot_id if isinstance(bot_id, int) else None
        self.database = Outage("database (refund outbox)", logger)

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failure (doubling, capped)."""
        return backoff(attempts, base=self.base_delay, cap=self.max_delay)

    def claim_due(self, *, limit: int = 1, only: int | None = None) -> list[RefundJob]:
        """Lease up to ``limit`` due pending rows (skipping rows another worker holds)."""
        recycle()
        now, token = self.clock(), uuid.uuid4().hex
        with transaction.atomic():
            rows = RefundRequest.objects.select_related("payment").filter(
                state=RefundRequest.State.PENDING, next_attempt_at__lte=now)
            if only is not None:
                rows = rows.filter(pk=only)
            if self.bot_id is not None:
                rows = rows.filter(Q(payment__bot_id__isnull=True)
                                   | Q(payment__bot_id=self.bot_id))
            skip = connection.features.has_select_for_update_skip_locked
            rows = rows.select_for_update(skip_locked=skip, of=("self",))
            jobs = []
            for row in rows.order_by("next_attempt_at", "id")[:limit]:
                claimed = RefundRequest.objects.filter(
                    pk=row.pk, state=RefundRequest.State.PENDING, next_attempt_at__lte=now
                ).update(attempts=F("attempts") + 1, claimed_by=token,
                         next_attempt_at=now + timedelta(seconds=self.lease))
                if claimed:
                    jobs.append(RefundJob(row.pk, row.payment.charge_id,
                                          row.payment.telegram_user_id, row.attempts + 1, token))
        return jobs

    def renew(self, job: RefundJob) -> bool:
        """Extend the lease of ``job``; False when the row is no longer held under its token."""
        return bool(RefundRequest.objects.filter(
            pk=job.request_id, claimed_by=job.token, state=RefundRequest.State.PENDING
        ).update(next_attempt_at=self.clock() + timedelta(seconds=self.lease)))

    def mark_done(self, request_id: int, *, note: str = "") -> RefundEvent | None:
        """Record success and reverse the grant once (no-op when already done); returns the
        refund event when this call reversed the payment."""
        recycle()
        event = None
        with transaction.atomic():
            row = RefundRequest.objects.select_for_update().get(pk=request_id)
            if row.state == RefundRequest.State.DONE:
                return None
            payment = TelegramPayment.objects.select_for_update().get(pk=row.payment_id)
            if reverse_payment(payment, reason=row.reason or "refund"):
                event = refund_event(payment)
            row.state = RefundRequest.State.DONE
            row.done_at = self.clock()
            row.last_error = note
            row.claimed_by = ""
            row.save(update_fields=["state", "done_at", "last_error", "claimed_by"])
        return event

    def mark_retry(self, job: RefundJob, error: str, *, delay: float | None = None) -> str:
        """Schedule another attempt (or fail the row after ``max_attempts``); returns state."""
        recycle()
        failed = delay is None and job.attempts >= self.max_attempts
        wait = self.backoff(job.attempts) if delay is None else delay
        state = RefundRequest.State.FAILED if failed else RefundRequest.State.PENDING
        RefundRequest.objects.filter(pk=job.request_id, state=RefundRequest.State.PENDING).update(
            state=state, last_error=error[:2000], claimed_by="",
            next_attempt_at=self.clock() + timedelta(seconds=wait))
        return str(state)

    def mark_failed(self, job: RefundJob, error: str) -> str:
        """A permanent error: stop retrying the row (an admin may re-arm it)."""
        recycle()
        RefundRequest.objects.filter(pk=job.request_id, state=RefundRequest.State.PENDING).update(
            state=RefundRequest.State.FAILED, last_error=error[:2000], claimed_by="")
        return str(RefundRequest.State.FAILED)

    async def _keep_lease(self, job: RefundJob) -> None:
        while True:
            await asyncio.sleep(max(self.lease / 3, 0.05))
            try:
                held = await sync_to_async(self.renew)(job)
            except Exception as exc:
                logger.warning("could not renew the lease of refund %s (%s)", job.request_id,
                               describe(exc))
                continue
            if not held:
                logger.warning("lease of refund %s was lost", job.request_id)
                return

    async def _call(self, job: RefundJob) -> None:
        heartbeat = asyncio.create_task(self._keep_lease(job))
        try:
            await self.bot.refund_star_payment(user_id=job.telegram_user_id,
                                               telegram_payment_charge_id=job.charge_id)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _attempt(self, job: RefundJob) -> str:
        try:
            await self._call(job)
        except TelegramRetryAfter as exc:
            return await self._record(self.mark_retry, job, str(exc),
                                      delay=float(exc.retry_after))
        except TelegramBadRequest as exc:
            if ALREADY_REFUNDED in str(exc.message):
                await self._done(await self._record(self.mark_done, job.request_id,
                                                    note=ALREADY_REFUNDED))
                return str(RefundRequest.State.DONE)
            return await self._record(self.mark_failed, job, str(exc))
        except Exception as exc:
            logger.warning("refund of %s failed: %s", job.charge_id, describe(exc))
            return await self._record(self.mark_retry, job, describe(exc))
        await self._done(await self._record(self.mark_done, job.request_id))
        return str(RefundRequest.State.DONE)

    async def _done(self, event: RefundEvent | None) -> None:
        if event is None or self.config is None:
            return
        try:
            await after_refund(self.bot, self.config, event)
        except Exception as exc:
            if is_transient(exc):  # an outage outlasted the retries: one line, no traceback
                logger.warning("telling about refund %s failed: %s", event.charge_id,
                               describe(exc))
            else:
                logger.exception("telling about refund %s failed", event.charge_id)

    async def _record(self, mark: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Write an outcome, retrying a few times when the database blips (the call to
        Telegram is already made: losing its outcome would mean calling again)."""
        for attempt in range(1, 5):
            try:
                return await sync_to_async(mark)(*args, **kwargs)
            except Exception as exc:
                if attempt == 4 or not is_transient(exc):
                    raise
                logger.warning("recording a refund outcome failed (%s); retrying",
                               describe(exc))
                await asyncio.sleep(backoff(attempt, base=0.2, cap=2.0))
        raise AssertionError("unreachable")

    async def process_due(self, *, limit: int = 20, only: int | None = None) -> dict[int, str]:
        """Attempt due rows once each, one lease at a time; ``{request_id: resulting state}``."""
        results: dict[int, str] = {}
        for _ in range(limit):
            jobs = await sync_to_async(self.claim_due)(limit=1, only=only)
            if not jobs:
                break
            results[jobs[0].request_id] = await self._attempt(jobs[0])
        return results

    async def run(self, *, interval: float = 5.0, stop: asyncio.Event | None = None) -> None:
        """Work the outbox until ``stop`` is set (the ``billable_refunds --loop`` worker).

        A pass that fails because the database is unreachable is logged once per outage and
        retried after a pause; connections are recycled before every pass.
        """
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.process_due()
                self.database.recovered()
            except Exception as exc:
                if is_transient(exc):
                    self.database.failed(exc)
                else:
                    logger.exception("refund outbox pass failed")
                await arecycle()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


def attach_refund_worker(dp: Dispatcher, *, interval: float = 5.0,
                         config: BillingConfig | None = None) -> None:
    """Work the refund outbox in the bot process while ``dp`` runs (startup → shutdown).

    ``config`` defaults to the one ``setup_billing`` installed on ``dp`` (for the notices).
    """
    state: dict[str, Any] = {}

    async def start(bot: Bot) -> None:
        stop = asyncio.Event()
        state["stop"] = stop
        outbox = RefundOutbox(bot, config=config or billing_config(dp))
        state["task"] = asyncio.create_task(outbox.run(interval=interval, stop=stop))

    async def stop() -> None:
        if "task" in state:
            state["stop"].set()
            await state.pop("task")

    dp.startup.register(start)
    dp.shutdown.register(stop)


__all__ = [
    "RefundJob",
    "RefundOutbox",
    "arecord_refunded",
    "arecord_refunded_once",
    "arequest_refund",
    "attach_refund_worker",
    "record_refunded",
    "record_refunded_once",
    "refund_event",
    "request_refund",
    "reverse_payment",
]
