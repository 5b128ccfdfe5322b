"""The paywall of a user whose Stars subscription still runs: it says when the subscription
renews (or ends) and never offers it again; one-off packs of the product stay on offer."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiogram import Bot, Dispatcher, Router
from aiogram.filters import Command
from aiogram.types import Message, User

from bot_kit.callbacks import BuyOffer, SubscribeOffer
from bot_kit.config import BillingConfig
from bot_kit.decorators import requires_quota
from bot_kit.models import StarSubscription
from bot_kit.payments.subscription_handlers import SubscriptionAction
from bot_kit.testing import FakeSession, UpdateFactory, make_bot
from tests.bot_kit.helpers import buttons_sent, texts_sent

pytestmark = pytest.mark.django_db(transaction=True)
DAY = 86400
SECRETS = ("secret-0123456789",)


def gated_router() -> Router:
    router = Router(name="host")

    @router.message(Command("predict"))
    @requires_quota("PREDICTIONS")
    async def predict(message: Message) -> None:
        await message.answer("prediction: sunny")

    return router


@pytest.fixture
def monthly(catalog: dict[str, Any], make_offer: Callable[..., Any]) -> Any:
    """``PREDICT_MONTH``: 2 predictions a month for 200 ⭐ (a subscription offer)."""
    return make_offer("PREDICT_MONTH", items=[(catalog["product"], 2)], price="200",
                      currency="XTR", name="2 predictions a month",
                      translations={"ru": {"name": "2 предсказания в месяц"}})


@pytest.fixture
def bigger(catalog: dict[str, Any], make_offer: Callable[..., Any]) -> Any:
    """``PREDICT_MAX``: another subscription offer of the same product."""
    return make_offer("PREDICT_MAX", items=[(catalog["product"], 20)], price="500",
                      currency="XTR", name="20 predictions a month")


def expiry_in(days: int) -> int:
    return int(time.time()) + days * DAY


def shown(unix: int) -> str:
    """The date as the kit shows it (``/subscribe``, notices): ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(unix, tz=UTC).strftime("%Y-%m-%d")


async def subscribe(dp: Dispatcher, bot: Bot, session: FakeSession, updates: UpdateFactory,
                    user: User, *, expires: int, sku: str = "PREDICT_MONTH",
                    charge_id: str = "first") -> str:
    """Get the invoice link of ``sku`` (the ``SubscribeOffer`` button, as the paywall and
    ``/subscribe``'s catalog send it) and pay it; return the payload."""
    await dp.feed_update(bot, updates.callback(SubscribeOffer(sku=sku).pack(), user=user))
    link = session.calls_to("createInvoiceLink")[-1].params
    payload = str(link["payload"])
    await dp.feed_update(bot, updates.pre_checkout(payload=payload, total_amount=link["prices"][0]
                                                   ["amount"], user=user))
    assert session.calls_to("answerPreCheckoutQuery")[-1].params["ok"] is True
    await dp.feed_update(bot, updates.successful_payment(
        payload=payload, total_amount=link["prices"][0]["amount"], user=user,
        charge_id=charge_id, is_recurring=True, is_first_recurring=True,
        subscription_expiration_date=expires))
    return payload


async def use_up(dp: Dispatcher, bot: Bot, session: FakeSession, updates: UpdateFactory,
                 user: User, units: int = 2) -> None:
    """Spend the subscription's units; the next ``/predict`` meets the paywall."""
    for _ in range(units):
        await dp.feed_update(bot, updates.command("predict", user=user))
    assert texts_sent(session)[-units:] == ["prediction: sunny"] * units


async def paywall(dp: Dispatcher, bot: Bot, session: FakeSession, updates: UpdateFactory,
                  user: User) -> tuple[str, list[tuple[str, str]]]:
    """``/predict`` once more: the paywall's text and buttons."""
    session.calls.clear()
    await dp.feed_update(bot, updates.command("predict", user=user))
    [text] = texts_sent(session)
    return text, buttons_sent(session)


@pytest.mark.parametrize(("lang", "expected"), [
    ("en", "You have run out of Predictions. Your subscription 2 predictions a month renews on "
           "{date}."),
    ("ru", "У вас закончилось: «Predictions». Следующее продление подписки "
           "«2 предсказания в месяц» — {date}."),
], ids=["en", "ru"])
async def test_an_active_subscriber_reads_when_it_renews_and_is_not_offered_it_again(
        make_dp, bot, session, updates, monthly, lang, expected):
    config = BillingConfig(subscription_offers=("PREDICT_MONTH",), signing_secrets=SECRETS)
    dp = make_dp(config, gated_router())
    user = updates.user(language_code=lang)
    expires = expiry_in(30)
    await subscribe(dp, bot, session, updates, user, expires=expires)
    await use_up(dp, bot, session, updates, user)

    text, buttons = await paywall(dp, bot, session, updates, user)

    assert text == expected.format(date=shown(expires))
    assert buttons == []  # before: the "subscribe" button of PREDICT_MONTH, a dead end


async def test_the_packs_of_the_product_stay_on_offer(make_dp, bot, session, updates, catalog,
                                                      monthly):
    config = BillingConfig(offers=("PACK_10", "OTHER_5"), subscription_offers=("PREDICT_MONTH",),
                           signing_secrets=SECRETS)
    dp = make_dp(config, gated_router())
    user = updates.user()
    expires = expiry_in(30)
    await subscribe(dp, bot, session, updates, user, expires=expires)
    await use_up(dp, bot, session, updates, user)

    text, buttons = await paywall(dp, bot, session, updates, user)

    assert text == ("You have run out of Predictions. Your subscription 2 predictions a month "
                    f"renews on {shown(expires)}.\nNeed more now? Choose a pack:")
    assert buttons == [("10 predictions — 50 ⭐", BuyOffer(sku="PACK_10").pack())]


async def test_the_russian_pack_suffix(make_dp, bot, session, updates, catalog, monthly):
    config = BillingConfig(offers=("PACK_10",), subscription_offers=("PREDICT_MONTH",),
                           signing_secrets=SECRETS)
    dp = make_dp(config, gated_router())
    user = updates.user(language_code="ru")
    expires = expiry_in(30)
    await subscribe(dp, bot, session, updates, user, expires=expires)
    await use_up(dp, bot, session, updates, user)

    text, buttons = await paywall(dp, bot, session, updates, user)

    assert text == ("У вас закончилось: «Predictions». Следующее продление подписки "
                    f"«2 предсказания в месяц» — {shown(expires)}.\n"
                    "Нужно больше сейчас? Выберите пакет:")
    assert buttons == [("10 predictions — 50 ⭐", BuyOffer(sku="PACK_10").pack())]


@pytest.mark.parametrize(("lang", "expected"), [
    ("en", "You have run out of Predictions. Your subscription 2 predictions a month ends on "
           "{date} and will not renew."),
    ("ru", "У вас закончилось: «Predictions». Подписка «2 предсказания в месяц» действует до "
           "{date} и не продлится."),
], ids=["en", "ru"])
async def test_a_cancelled_subscriber_reads_when_it_ends(make_dp, bot, session, updates,
                                                         monthly, lang, expected):
    config = BillingConfig(subscription_offers=("PREDICT_MONTH",), signing_secrets=SECRETS)
    dp = make_dp(config, gated_router())
    user = updates.user(language_code=lang)
    expires = expiry_in(20)
    await subscribe(dp, bot, session, updates, user, expires=expires)
    await dp.feed_update(bot, updates.callback(SubscriptionAction(action="cancel").pack(),
                                               user=user))
    assert (await StarSubscription.objects.aget(telegram_user_id=user.id)).state == "canceled"
    await use_up(dp, bot, session, updates, user)

    text, buttons = await paywall(dp, bot, session, updates, user)

    assert text == expected.format(date=shown(expires))
    assert buttons == []


async def test_a_failed_renewal_reads_as_ending(make_dp, bot, session, updates, monthly):
    """Telegram's ``failed`` state: the paid period still runs, nothing renews it."""
    config = BillingConfig(subscription_offers=("PREDICT_MONTH",), signing_secrets=SECRETS)
    dp = make_dp(config, gated_router())
    user = updates.user()
    expires = expiry_in(1)
    payload = await subscribe(dp, bot, session, updates, user, expires=expires)
    await dp.feed_update(bot, updates.subscription(state="failed", payload=payload, user=user))
    await use_up(dp, bot, session, updates, user)

    text, buttons = await paywall(dp, bot, session, updates, user)

    assert text == ("You have run out of Predictions. Your subscription 2 predictions a month "
                    f"ends on {shown(expires)} and will not renew.")
    assert buttons == []


async def test_another_subscription_of_the_product_is_still_offered(make_dp, bot, session,
                                                                    updates, monthly, bigger):
    config = BillingConfig(subscription_offers=("PREDICT_MONTH", "PREDICT_MAX"),
                           signing_secrets=SECRETS)
    dp = make_dp(config, gated_router())
    user = updates.user()
    expires = expiry_in(30)
    await subscribe(dp, bot, session, updates, user, expires=expires)
    await use_up(dp, bot, session, updates, user)

    text, buttons = await paywall(dp, bot, session, updates, user)

    assert text == ("You have run out of Predictions. Your subscription 2 predictions a month "
                    f"renews on {shown(expires)}.\nOr choose another subscription:")
    assert buttons == [("20 predictions a month — 500 ⭐",
                        SubscribeOffer(sku="PREDICT_MAX").pack())]
    # That button is no dead end: its link is made (one subscription per user *and offer*).
    session.calls.clear()
    await dp.feed_update(bot, updates.callback(buttons[0][1], user=user))
    assert len(session.calls_to("createInvoiceLink")) == 1


async def test_a_user_without_a_subscription_is_still_offered_it(make_dp, bot, session, updates,
                                                                 monthly):
    """The unchanged path: someone else's subscription changes nothing for this user."""
    config = BillingConfig(subscription_offers=("PREDICT_MONTH",), signing_secrets=SECRETS)
    dp = make_dp(config, gated_router())
    await subscribe(dp, bot, session, updates, updates.user(), expires=expiry_in(30))

    text, buttons = await paywall(dp, bot, session, updates, updates.user())

    assert text == "You have run out of Predictions. Subscribe to continue:"
    assert buttons == [("2 predictions a month — 200 ⭐",
                        SubscribeOffer(sku="PREDICT_MONTH").pack())]


async def test_once_the_period_ended_the_user_reads_that_it_ended(make_dp, bot, session, updates,
                                                                  monthly):
    config = BillingConfig(subscription_offers=("PREDICT_MONTH",), signing_secrets=SECRETS)
    dp = make_dp(config, gated_router())
    user = updates.user()
    ended = expiry_in(-1)
    await subscribe(dp, bot, session, updates, user, expires=ended)
    await use_up(dp, bot, session, updates, user)

    text, buttons = await paywall(dp, bot, session, updates, user)

    assert text == (f"Your subscription 2 predictions a month ended on {shown(ended)}. Renew it "
                    "with /subscribe.")
    assert buttons == [("2 predictions a month — 200 ⭐",
                        SubscribeOffer(sku="PREDICT_MONTH").pack())]


@pytest.mark.parametrize("wallet", ["shared", "per_bot"])
async def test_a_subscription_sold_by_another_bot_counts_the_same(updates, monthly, wallet):
    """Subscriptions are one per user and offer whatever the bot (docs/multibot.md): bot B
    would refuse a second one, so its paywall shows bot A's subscription instead of the
    button."""
    from bot_kit.setup import setup_billing

    bots, dps, sessions = {}, {}, {}
    for token in ("111:TOKEN-A", "222:TOKEN-B"):
        bot_id = int(token.split(":")[0])
        sessions[bot_id] = FakeSession()
        bots[bot_id] = make_bot(sessions[bot_id], token=token)
        dps[bot_id] = Dispatcher()
        setup_billing(dps[bot_id], BillingConfig(
            bot_id=bot_id, wallet=wallet, subscription_offers=("PREDICT_MONTH",),
            signing_secrets=SECRETS))
        dps[bot_id].include_router(gated_router())
    user = updates.user()
    expires = expiry_in(30)
    await subscribe(dps[111], bots[111], sessions[111], updates, user, expires=expires)
    if wallet == "shared":  # one balance: the units of A's subscription are spent at B
        await use_up(dps[222], bots[222], sessions[222], updates, user)

    text, buttons = await paywall(dps[222], bots[222], sessions[222], updates, user)

    assert text == ("You have run out of Predictions. Your subscription 2 predictions a month "
                    f"renews on {shown(expires)}.")
    assert buttons == []
    # The button it no longer shows would have been refused at bot B:
    await dps[222].feed_update(bots[222], updates.callback(
        SubscribeOffer(sku="PREDICT_MONTH").pack(), user=user))
    assert texts_sent(sessions[222])[-1] == ("You already have this subscription. Manage it "
                                             "with /subscribe.")
