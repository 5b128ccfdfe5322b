"""``InboxWorker`` through a real Dispatcher: outcomes, retries, dead letters, and re-runs
after a worker died — the money paths (gated quota, successful_payment) stay exactly-once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiogram import Bot, Router
from aiogram.filters import Command
from aiogram.types import Message, Update
from asgiref.sync import sync_to_async
from django.db.utils import OperationalError
from django.utils import timezone

from billable.models import ExternalIdentity
from billable.services import TransactionService
from bot_kit.config import BillingConfig
from bot_kit.decorators import requires_quota
from bot_kit.inbox import store
from bot_kit.inbox.polling import raw_update
from bot_kit.inbox.worker import InboxWorker
from bot_kit.middlewares.quota import hold_quota
from bot_kit.models import InboxUpdate, TelegramPayment
from bot_kit.payments.invoices import prepare_invoice
from bot_kit.testing import FakeSession, UpdateFactory
from tests.bot_kit.helpers import texts_sent

pytestmark = pytest.mark.django_db(transaction=True)
CONFIG = BillingConfig(offers=("PACK_10",), signing_secrets=("inbox-secret-0123456789",))


def host_router(runs: list[str], *, error: BaseException | None = None) -> Router:
    router = Router()

    @router.message(Command("predict"))
    @requires_quota("PREDICTIONS")
    async def predict(message: Message) -> None:
        runs.append("predict")
        await message.answer("prediction")

    @router.message(Command("boom"))
    async def boom(message: Message) -> None:
        runs.append("boom")
        assert error is not None
        raise error

    return router


async def put(bot: Bot, update: Update, *, died: bool = False) -> int:
    """Store ``update``; with ``died`` as if a worker had claimed it and died (lease over)."""
    await store.astore(bot.id, raw_update(update))
    row = await InboxUpdate.objects.aget(bot_id=bot.id, update_id=update.update_id)
    if died:
        row.claimed_by, row.attempts = "dead-worker", 1
        row.available_at = timezone.now() - timedelta(seconds=1)
        await row.asave()
    return row.pk


async def customer(updates: UpdateFactory, grant: Any, offer: Any) -> tuple[Any, int]:
    tg_user = updates.user()
    resolved = await sync_to_async(_identity)(tg_user.id)
    await grant(resolved, offer)
    return tg_user, resolved


def _identity(telegram_id: int) -> int:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create(username=f"tg{telegram_id}")
    ExternalIdentity.objects.create(provider="telegram", external_id=str(telegram_id), user=user)
    return int(user.pk)


async def test_worker_feeds_stored_updates_and_marks_them_done(
        make_dp: Any, bot: Bot, session: FakeSession, updates: UpdateFactory, catalog: dict,
        grant: Any) -> None:
    runs: list[str] = []
    tg_user, user_id = await customer(updates, grant, catalog["trial"])
    worker = InboxWorker(make_dp(CONFIG, host_router(runs)), bot)
    update = updates.command("predict", user=tg_user)
    await put(bot, update)
    assert await worker.process_due() == {update.update_id: "done"}
    assert runs == ["predict"] and texts_sent(session) == ["prediction"]
    assert await TransactionService.aget_balance(user_id, "PREDICTIONS") == 2
    assert await worker.process_due() == {}


async def test_gated_update_of_a_dead_worker_runs_again_and_is_charged_once(
        make_dp: Any, bot: Bot, session: FakeSession, updates: UpdateFactory, catalog: dict,
        grant: Any) -> None:
    from bot_kit.decorators import QuotaRequirement

    runs: list[str] = []
    tg_user, user_id = await customer(updates, grant, catalog["trial"])
    worker = InboxWorker(make_dp(CONFIG, host_router(runs)), bot)
    update = updates.command("predict", user=tg_user)
    # The dead worker had placed its hold (3 → 2 spendable) and died inside the handler.
    key = f"tg:{bot.id}:{update.update_id}:PREDICTIONS"
    held = await sync_to_async(hold_quota)(user_id, QuotaRequirement("PREDICTIONS", 1), key)
    assert held.run and await TransactionService.aget_balance(user_id, "PREDICTIONS") == 2
    await put(bot, update, died=True)

    assert await worker.process_due() == {update.update_id: "done"}
    assert runs == ["predict"] and texts_sent(session) == ["prediction"]
    assert await TransactionService.aget_balance(user_id, "PREDICTIONS") == 2  # charged once

    # Died again, this time after the charge committed: not run, not charged again.
    await InboxUpdate.objects.filter(update_id=update.update_id).aupdate(
        state="pending", claimed_by="dead-worker", available_at=timezone.now())
    assert await worker.process_due() == {update.update_id: "done"}
    assert runs == ["predict"]
    assert await TransactionService.aget_balance(user_id, "PREDICTIONS") == 2


async def test_paid_update_of_a_dead_worker_is_not_granted_twice(
        make_dp: Any, bot: Bot, session: FakeSession, updates: UpdateFactory,
        catalog: dict) -> None:
    tg_user = updates.user()
    user_id = await sync_to_async(_identity)(tg_user.id)
    invoice = await sync_to_async(prepare_invoice)(user_id, tg_user.id, "PACK_10", CONFIG)
    worker = InboxWorker(make_dp(CONFIG), bot)
    paid = updates.successful_payment(payload=invoice.payload, total_amount=invoice.amount,
                                      charge_id="inbox-charge-1", user=tg_user)
    await put(bot, paid)
    assert await worker.process_due() == {paid.update_id: "done"}
    # The worker died after the commit, before marking the row done: the row comes back.
    await InboxUpdate.objects.filter(update_id=paid.update_id).aupdate(
        state="pending", claimed_by="dead-worker", available_at=timezone.now())
    assert await worker.process_due() == {paid.update_id: "done"}

    assert await TelegramPayment.objects.filter(charge_id="inbox-charge-1").acount() == 1
    assert await TransactionService.aget_balance(user_id, "PREDICTIONS") == 10
    assert len([t for t in texts_sent(session) if t.startswith("Payment received")]) == 1


async def test_transient_failures_are_retried_and_bugs_are_dead_lettered(
        make_dp: Any, bot: Bot, updates: UpdateFactory) -> None:
    outage = InboxWorker(make_dp(CONFIG, host_router([], error=OperationalError("db down"))),
                         bot, max_attempts=1)
    update = updates.command("boom")
    await put(bot, update)
    assert await outage.process_due() == {update.update_id: "pending"}
    row = await InboxUpdate.objects.aget(update_id=update.update_id)
    assert (row.attempts, row.last_error) == (1, "OperationalError: db down")
    assert row.available_at > timezone.now()  # backing off, never dead for an outage

    await InboxUpdate.objects.filter(pk=row.pk).aupdate(available_at=timezone.now())
    bug = InboxWorker(make_dp(CONFIG, host_router([], error=ValueError("bug"))), bot,
                      max_attempts=2)
    assert await bug.process_due() == {update.update_id: "dead"}
    row = await InboxUpdate.objects.aget(pk=row.pk)
    assert (row.state, row.attempts, row.last_error) == ("dead", 2, "ValueError: bug")


async def test_a_pre_checkout_older_than_telegrams_deadline_is_not_answered(
        make_dp: Any, bot: Bot, session: FakeSession, updates: UpdateFactory) -> None:
    query = updates.pre_checkout(payload="b1.x", total_amount=50)
    pk = await put(bot, query)
    await InboxUpdate.objects.filter(pk=pk).aupdate(
        created_at=timezone.now() - timedelta(seconds=30))
    worker = InboxWorker(make_dp(CONFIG), bot)
    assert await worker.process_due() == {query.update_id: "done"}
    assert session.calls_to("answerPreCheckoutQuery") == []
    assert (await InboxUpdate.objects.aget(pk=pk)).last_error.startswith("expired")
