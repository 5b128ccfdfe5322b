"""A renewal charge that arrives after the subscription was cancelled.

``editUserStarSubscription(is_canceled=True)`` cancels the *extension* of a subscription
(Bot API); a renewal already taken (charged before the cancel, or delivered late) still paid a
period. The kit grants that period — a payment is never lost — and keeps the subscription
cancelled: only Telegram's ``subscription`` update ``active`` ("the user re-enabled a
previously canceled subscription") or the bot's own re-enable make it active again.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from aiogram import Bot
from aiogram.types import User

from bot_kit.config import BillingConfig
from bot_kit.events import SubscriptionEvent
from bot_kit.models import StarSubscription, TelegramPayment
from bot_kit.payments.subscription_handlers import SubscriptionAction
from bot_kit.testing import FakeSession, UpdateFactory
from tests.bot_kit.payments.flows import texts_sent

pytestmark = pytest.mark.django_db(transaction=True)
DAY = 86400


async def pro_batches(tg_user: User) -> list[Any]:
    from billable.models import QuotaBatch

    return [b async for b in QuotaBatch.objects.filter(
        product__product_key="PRO",
        user__billable_external_identities__external_id=str(tg_user.id)).order_by("valid_from")]


async def first_payment(dp: Any, bot: Bot, session: FakeSession, updates: UpdateFactory,
                        user: User, expires: int) -> str:
    await dp.feed_update(bot, updates.command("subscribe", user=user))
    payload = str(session.calls_to("createInvoiceLink")[-1].params["payload"])
    await dp.feed_update(bot, updates.successful_payment(
        payload=payload, total_amount=100, user=user, charge_id="first", is_recurring=True,
        is_first_recurring=True, subscription_expiration_date=expires))
    return payload


async def renewal(dp: Any, bot: Bot, updates: UpdateFactory, user: User, payload: str,
                  expires: int, charge_id: str = "renewal-1") -> None:
    await dp.feed_update(bot, updates.successful_payment(
        payload=payload, total_amount=100, user=user, charge_id=charge_id, is_recurring=True,
        is_first_recurring=False, subscription_expiration_date=expires))


def heard_by(config: BillingConfig, events: list[SubscriptionEvent]) -> BillingConfig:
    """``config`` with an ``on_subscription_changed`` that appends every event to ``events``."""

    async def changed(event: SubscriptionEvent) -> None:
        events.append(event)

    return BillingConfig(offers=config.offers, subscription_offers=config.subscription_offers,
                         signing_secrets=config.signing_secrets, on_subscription_changed=changed)


def day(unix: int) -> str:
    return datetime.fromtimestamp(unix, tz=UTC).strftime("%Y-%m-%d")


async def test_a_renewal_after_the_bots_cancel_is_granted_and_stays_cancelled(
        make_dp: Any, config: BillingConfig, bot: Bot, session: FakeSession,
        updates: UpdateFactory, catalog: dict) -> None:
    events: list[SubscriptionEvent] = []
    config = heard_by(config, events)
    dp = make_dp(config)
    alice = updates.user()
    now = int(time.time())
    payload = await first_payment(dp, bot, session, updates, alice, now + 30 * DAY)
    await dp.feed_update(bot, updates.callback(SubscriptionAction(action="cancel").pack(),
                                               user=alice))
    assert session.calls_to("editUserStarSubscription")[-1].params["is_canceled"] is True
    events.clear()

    for _ in range(2):  # delivered twice: granted once
        await renewal(dp, bot, updates, alice, payload, now + 60 * DAY)

    payment = await TelegramPayment.objects.aget(charge_id="renewal-1")
    assert payment.status == "confirmed"  # the payment taken is honoured
    first, renewed = await pro_batches(alice)
    assert renewed.valid_from == first.expires_at  # the period it paid for follows on
    subscription = await StarSubscription.objects.aget(telegram_user_id=alice.id)
    assert subscription.state == "canceled"  # before the fix: "active" again
    assert (subscription.renewals, subscription.last_charge_id) == (1, "renewal-1")
    assert subscription.expires_at == datetime.fromtimestamp(now + 60 * DAY, tz=UTC)
    assert [(e.reason, e.state, e.previous_state) for e in events] == [
        ("renewed", "canceled", "canceled")]
    # Nothing re-enabled it at Telegram, and the user sees what is true: cancelled, paid
    # until the renewal's date, with the button to re-enable it.
    assert len(session.calls_to("editUserStarSubscription")) == 1
    await dp.feed_update(bot, updates.command("subscribe", user=alice))
    status = session.calls_to("sendMessage")[-1].params
    assert status["text"] == (f"Your subscription Pro monthly: cancelled (paid until "
                              f"{day(now + 60 * DAY)}).")
    assert status["reply_markup"]["inline_keyboard"][0][0]["text"] == "Re-enable subscription"


async def test_a_renewal_after_the_users_cancel_stays_cancelled_until_they_re_enable(
        make_dp: Any, config: BillingConfig, bot: Bot, session: FakeSession,
        updates: UpdateFactory, catalog: dict) -> None:
    dp = make_dp(config)
    alice = updates.user()
    now = int(time.time())
    payload = await first_payment(dp, bot, session, updates, alice, now + 30 * DAY)
    await dp.feed_update(bot, updates.subscription(state="canceled", payload=payload,
                                                   user=alice))

    await renewal(dp, bot, updates, alice, payload, now + 60 * DAY)

    subscription = await StarSubscription.objects.aget(telegram_user_id=alice.id)
    assert (subscription.state, subscription.renewals) == ("canceled", 1)
    assert len(await pro_batches(alice)) == 2
    await dp.feed_update(bot, updates.subscription(state="active", payload=payload, user=alice))
    assert (await StarSubscription.objects.aget(pk=subscription.pk)).state == "active"
    assert texts_sent(session)[-1] == "Your subscription was re-enabled."


async def test_a_renewal_after_a_failed_payment_makes_it_active(
        make_dp: Any, config: BillingConfig, bot: Bot, session: FakeSession,
        updates: UpdateFactory, catalog: dict) -> None:
    """``failed`` is a payment that did not go through; a renewal that did is the
    subscription running again (nobody cancelled it). The host hears the change as it was:
    failed → active."""
    events: list[SubscriptionEvent] = []
    config = heard_by(config, events)
    dp = make_dp(config)
    alice = updates.user()
    now = int(time.time())
    payload = await first_payment(dp, bot, session, updates, alice, now + 30 * DAY)
    await dp.feed_update(bot, updates.subscription(state="failed", payload=payload, user=alice))
    events.clear()

    await renewal(dp, bot, updates, alice, payload, now + 60 * DAY)

    subscription = await StarSubscription.objects.aget(telegram_user_id=alice.id)
    assert (subscription.state, subscription.renewals) == ("active", 1)
    # before the fix the host heard active → active (the state after the charge, twice)
    assert [(e.reason, e.state, e.previous_state) for e in events] == [
        ("renewed", "active", "failed")]
