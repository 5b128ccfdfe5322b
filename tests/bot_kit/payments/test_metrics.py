"""bot_kit's metrics: paywalls, pre-checkout declines, failed payments and the refund backlog."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram import Bot, Dispatcher, Router
from aiogram.filters import Command
from aiogram.types import Message
from asgiref.sync import sync_to_async
from prometheus_client import REGISTRY

from bot_kit.config import BillingConfig
from bot_kit.decorators import requires_quota
from bot_kit.testing import FakeSession, UpdateFactory
from tests.bot_kit.payments.flows import pay, pre_checkout, request_invoice

pytestmark = pytest.mark.django_db(transaction=True)


def sample(name: str, labels: dict[str, str]) -> float:
    """A sample of the default registry (read in a thread: collecting measures the backlogs,
    which queries the database)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Deltas:
    """Changes of Prometheus samples since :meth:`start`."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self.samples = samples
        self.before: dict[Any, float] = {}

    async def start(self) -> Deltas:
        for name, labels in self.samples:
            self.before[name, tuple(sorted(labels.items()))] = await sync_to_async(sample)(
                name, labels)
        return self

    async def of(self, name: str, labels: dict[str, str]) -> float:
        now = await sync_to_async(sample)(name, labels)
        return now - self.before[name, tuple(sorted(labels.items()))]


FAILED = ("billable_payments_total", {"outcome": "failed", "currency": "XTR",
                                      "method": "telegram"})
DECLINED = ("billable_payment_failures_total", {"outcome": "declined",
                                                "reason": "amount_mismatch"})
REASON = ("billable_payment_failures_total", {"outcome": "failed", "reason": "amount_mismatch"})
PAYWALL = ("billable_paywalls_total", {"product": "CREDITS", "channel": "telegram"})
REFUNDS = ("billable_backlog_items", {"backlog": "refunds"})
CONFIRMED = ("billable_payments_total", {"outcome": "confirmed", "currency": "XTR",
                                         "method": "telegram_stars"})


async def test_declines_failures_and_confirmations_are_counted(
        dp: Dispatcher, bot: Bot, session: FakeSession, updates: UpdateFactory,
        catalog: dict) -> None:
    alice = updates.user()
    invoice = await request_invoice(dp, bot, session, updates, alice)
    deltas = await Deltas(FAILED, DECLINED, REASON, CONFIRMED, REFUNDS).start()

    answer = await pre_checkout(dp, bot, session, updates, alice, invoice["payload"], 49)
    assert answer["ok"] is False
    session.fail("refundStarPayment", status=500)  # the refund stays in the backlog
    await pay(dp, bot, updates, alice, invoice, "short-charge", total_amount=49)
    await pay(dp, bot, updates, alice, invoice, "good-charge")

    assert await deltas.of(*DECLINED) == 1
    assert (await deltas.of(*FAILED), await deltas.of(*REASON)) == (1, 1)
    assert await deltas.of(*CONFIRMED) == 1
    assert await sync_to_async(sample)(*REFUNDS) == 1
    age = await sync_to_async(sample)("billable_backlog_oldest_age_seconds",
                                      {"backlog": "refunds"})
    assert 0 <= age < 60


async def test_a_paywall_is_counted(make_dp: Any, bot: Bot, session: FakeSession,
                                    updates: UpdateFactory, catalog: dict) -> None:
    router = Router()

    @router.message(Command("spend"))
    @requires_quota("credits")
    async def spend(message: Message) -> None:
        await message.answer("spent")

    dp = make_dp(BillingConfig(offers=("STARS_10",)), router)
    deltas = await Deltas(PAYWALL).start()
    await dp.feed_update(bot, updates.command("spend"))
    assert await deltas.of(*PAYWALL) == 1
