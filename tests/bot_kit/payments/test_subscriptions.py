"""Story 6: a Stars subscription — first payment, renewals, cancel, expiry behind the paywall."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from aiogram import Bot, Router
from aiogram.filters import Command
from aiogram.types import Message
from django.utils import timezone

from bot_kit.config import BillingConfig
from bot_kit.decorators import requires_quota
from bot_kit.models import StarSubscription, TelegramPayment
from bot_kit.payments.subscription_handlers import SubscriptionAction
from bot_kit.payments.subscriptions import SUBSCRIPTION_PERIOD, record_subscription_update
from bot_kit.testing import FakeSession, UpdateFactory
from tests.bot_kit.payments.flows import pre_checkout, texts_sent

pytestmark = pytest.mark.django_db(transaction=True)
DAY = 86400


def pro_router() -> Router:
    router = Router(name="host")

    @router.message(Command("predict"))
    @requires_quota("PRO")
    async def predict(message: Message) -> None:
        await message.answer("prediction: sunny")

    return router


async def pro_batches(tg_user: Any) -> list[Any]:
    from billable.models import QuotaBatch

    return [b async for b in QuotaBatch.objects.filter(
        product__product_key="PRO",
        user__billable_external_identities__external_id=str(tg_user.id)).order_by("valid_from")]


async def test_subscription_lifecycle(make_dp: Any, config: BillingConfig, bot: Bot,
                                      session: FakeSession, updates: UpdateFactory,
                                      catalog: dict) -> None:
    dp = make_dp(config, pro_router())
    alice = updates.user()
    await dp.feed_update(bot, updates.command("subscribe", user=alice))
    [link_call] = session.calls_to("createInvoiceLink")
    params = link_call.params
    assert params["subscription_period"] == SUBSCRIPTION_PERIOD == 2592000
    assert params["currency"] == "XTR" and params["prices"] == [
        {"label": "Pro monthly", "amount": 100}]
    assert params.get("provider_token", "") == ""
    button = session.calls_to("sendMessage")[-1].params["reply_markup"]["inline_keyboard"][0][0]
    assert button["url"].startswith("https://t.me/")
    payload = params["payload"]
    assert (await pre_checkout(dp, bot, session, updates, alice, payload, 100))["ok"] is True

    now = int(time.time())
    first = {"payload": payload, "total_amount": 100, "user": alice, "is_recurring": True}
    await dp.feed_update(bot, updates.successful_payment(
        charge_id="sub-1", is_first_recurring=True, subscription_expiration_date=now + 30 * DAY,
        **first))
    await dp.feed_update(bot, updates.command("predict", user=alice))
    assert texts_sent(session)[-1] == "prediction: sunny"
    [batch] = await pro_batches(alice)

    for _ in range(2):  # a renewal delivered twice extends once
        await dp.feed_update(bot, updates.successful_payment(
            charge_id="sub-2", is_first_recurring=False,
            subscription_expiration_date=now + 60 * DAY, **first))
    batches = await pro_batches(alice)
    assert len(batches) == 2 and batches[1].valid_from == batch.expires_at
    assert await TelegramPayment.objects.filter(status="confirmed").acount() == 2
    subscription = await StarSubscription.objects.aget(telegram_user_id=alice.id)
    assert (subscription.renewals, subscription.last_charge_id) == (1, "sub-2")
    assert len([t for t in texts_sent(session) if "Payment received" in t]) == 2

    await dp.feed_update(bot, updates.subscription(state="canceled", payload=payload, user=alice))
    subscription = await StarSubscription.objects.aget(pk=subscription.pk)
    assert subscription.state == "canceled"
    for state in ("active", "failed"):
        await dp.feed_update(bot, updates.subscription(state=state, payload=payload, user=alice))
        assert (await StarSubscription.objects.aget(pk=subscription.pk)).state == state

    later = timezone.now() + timedelta(days=61)
    with mock.patch("django.utils.timezone.now", return_value=later):
        await dp.feed_update(bot, updates.command("predict", user=alice))
    assert texts_sent(session)[-1] != "prediction: sunny"
    # The paywall names the ended subscription (and how to renew) instead of "run out".
    assert texts_sent(session)[-1].startswith("Your subscription Pro monthly ended on ")


async def subscribe_and_pay_first(dp: Any, bot: Bot, session: FakeSession,
                                  updates: UpdateFactory, tg_user: Any) -> str:
    """/subscribe, then the first recurring payment (charge ``first``); return the payload."""
    await dp.feed_update(bot, updates.command("subscribe", user=tg_user))
    payload = session.calls_to("createInvoiceLink")[0].params["payload"]
    await dp.feed_update(bot, updates.successful_payment(
        payload=payload, total_amount=100, user=tg_user, charge_id="first", is_recurring=True,
        is_first_recurring=True, subscription_expiration_date=int(time.time()) + 30 * DAY))
    return str(payload)


async def test_cancel_and_reenable_through_edit_user_star_subscription(
        make_dp: Any, config: BillingConfig, bot: Bot, session: FakeSession,
        updates: UpdateFactory, catalog: dict) -> None:
    dp = make_dp(config)
    alice = updates.user()
    await subscribe_and_pay_first(dp, bot, session, updates, alice)
    await dp.feed_update(bot, updates.command("subscribe", user=alice))
    markup = session.calls_to("sendMessage")[-1].params["reply_markup"]
    subscription = await StarSubscription.objects.aget(telegram_user_id=alice.id)
    assert markup["inline_keyboard"][0][0]["callback_data"] == SubscriptionAction(
        action="cancel", sub=subscription.pk).pack()
    await dp.feed_update(bot, updates.callback(SubscriptionAction(action="cancel").pack(),
                                               user=alice))
    await dp.feed_update(bot, updates.callback(SubscriptionAction(action="resume").pack(),
                                               user=alice))
    calls = [c.params for c in session.calls_to("editUserStarSubscription")]
    assert calls == [
        {"user_id": alice.id, "telegram_payment_charge_id": "first", "is_canceled": True},
        {"user_id": alice.id, "telegram_payment_charge_id": "first", "is_canceled": False}]
    subscription = await StarSubscription.objects.aget(telegram_user_id=alice.id)
    assert subscription.state == "active"


def test_unknown_subscription_state_is_ignored(catalog: dict) -> None:
    assert record_subscription_update(1, "nothing", "paused") is None
    assert record_subscription_update(1, "nothing", "canceled") is None


async def test_precheckout_of_a_paid_subscription_link_is_a_second_subscription(
        make_dp: Any, config: BillingConfig, bot: Bot, session: FakeSession,
        updates: UpdateFactory, catalog: dict) -> None:
    """Renewals are debited by Telegram without a pre-checkout query: a pre-checkout on a paid
    subscription link is the user starting a second subscription, which is declined."""
    dp = make_dp(config)
    alice = updates.user()
    payload = await subscribe_and_pay_first(dp, bot, session, updates, alice)
    answer = await pre_checkout(dp, bot, session, updates, alice, payload, 100)
    assert answer["ok"] is False
    assert answer["error_message"].startswith("You already have this subscription")
    assert (await pre_checkout(dp, bot, session, updates, alice, payload, 99))["ok"] is False
