"""A Stars subscription's life as outbound events: renewed (once per charge), cancelled,
failed — each written with the bot_kit change that caused it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiogram import Bot

from billable.events.outbox import subscribed_types
from billable.models import EventEndpoint, OutboxEvent
from bot_kit.config import BillingConfig
from bot_kit.testing import FakeSession, UpdateFactory
from tests.bot_kit.payments.test_subscriptions import subscribe_and_pay_first

pytestmark = pytest.mark.django_db(transaction=True)
DAY = 86400


async def test_renewal_cancel_and_failure_are_events(make_dp: Any, config: BillingConfig,
                                                     bot: Bot, session: FakeSession,
                                                     updates: UpdateFactory,
                                                     catalog: dict) -> None:
    subscribed_types.clear()
    await EventEndpoint.objects.acreate(url="http://127.0.0.1:9/", event_types=[
        "subscription.renewed", "subscription.cancelled", "subscription.failed"])
    dp = make_dp(config)
    alice = updates.user()
    payload = await subscribe_and_pay_first(dp, bot, session, updates, alice)
    for _ in range(2):  # a renewal delivered twice is one renewal
        await dp.feed_update(bot, updates.successful_payment(
            payload=payload, total_amount=100, user=alice, charge_id="second",
            is_recurring=True, is_first_recurring=False,
            subscription_expiration_date=int(time.time()) + 60 * DAY))
    for state in ("canceled", "canceled", "active", "failed"):
        await dp.feed_update(bot, updates.subscription(state=state, payload=payload, user=alice))

    events = [e async for e in OutboxEvent.objects.order_by("id")]
    assert [e.event_type for e in events] == [
        "subscription.renewed", "subscription.cancelled", "subscription.failed"]
    renewed = events[0].payload
    assert (renewed["renewals"], renewed["last_charge_id"], renewed["state"]) == (
        1, "second", "active")
    assert events[0].customer_id == str(renewed["user_id"])
    subscribed_types.clear()
