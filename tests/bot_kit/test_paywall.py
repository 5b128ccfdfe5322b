"""The paywall of a product sold only as a Stars subscription: it points to the subscription."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot_kit.callbacks import BuyOffer, SubscribeOffer
from bot_kit.config import BillingConfig
from bot_kit.decorators import requires_quota
from bot_kit.texts import get_text
from tests.bot_kit.helpers import buttons_sent, texts_sent

pytestmark = pytest.mark.django_db(transaction=True)


def gated_router() -> Router:
    router = Router()

    @router.message(Command("predict"))
    @requires_quota("PREDICTIONS")
    async def predict(message: Message) -> None:
        await message.answer("prediction: sunny")

    return router


@pytest.fixture
def monthly(catalog: dict[str, Any], make_offer: Callable[..., Any]) -> Any:
    """``PREDICT_MONTH``: 100 predictions a month for 200 ⭐ (a subscription offer)."""
    return make_offer("PREDICT_MONTH", items=[(catalog["product"], 100)], price="200",
                      currency="XTR", name="100 predictions a month",
                      translations={"ru": {"name": "100 предсказаний в месяц"}})


@pytest.fixture
def other_monthly(catalog: dict[str, Any], make_offer: Callable[..., Any]) -> Any:
    """``OTHER_MONTH``: a subscription offer of another product."""
    return make_offer("OTHER_MONTH", items=[(catalog["other"].items.get().product, 5)],
                      price="20", currency="XTR")


@pytest.mark.parametrize(("lang", "name"), [("en", "100 predictions a month"),
                                            ("ru", "100 предсказаний в месяц")])
async def test_paywall_of_a_subscription_only_product_offers_the_subscription(
        make_dp, bot, session, updates, monthly, lang, name):
    config = BillingConfig(offers=("OTHER_5",), subscription_offers=("PREDICT_MONTH",))
    dp = make_dp(config, gated_router())

    await dp.feed_update(bot, updates.command("predict",
                                              user=updates.user(language_code=lang)))

    product = "Predictions"
    assert texts_sent(session) == [get_text("paywall_subscribe", lang, config, product=product)]
    assert "Subscribe" in get_text("paywall_subscribe", "en", config)
    assert "подписку" in get_text("paywall_subscribe", "ru", config)
    # The same button as /subscribe's catalog: it answers with the subscription's invoice link.
    assert buttons_sent(session) == [
        (get_text("buy_button", lang, config, name=name, price="200 ⭐"),
         SubscribeOffer(sku="PREDICT_MONTH").pack())]


async def test_paywall_subscribe_button_sends_the_subscription_link(make_dp, bot, session,
                                                                    updates, monthly):
    config = BillingConfig(subscription_offers=("PREDICT_MONTH",), commands={"subscribe": None},
                           signing_secrets=("secret-0123456789",))
    dp = make_dp(config, gated_router())
    user = updates.user()
    await dp.feed_update(bot, updates.command("predict", user=user))
    [(_, data)] = buttons_sent(session)

    await dp.feed_update(bot, updates.callback(data, user=user))

    [link] = session.calls_to("createInvoiceLink")
    assert link.params["subscription_period"] == config.subscription_period
    assert link.params["title"] == "100 predictions a month"


async def test_a_pack_sold_by_buy_still_comes_first(make_dp, bot, session, updates, catalog,
                                                    monthly):
    config = BillingConfig(offers=("PACK_10",), subscription_offers=("PREDICT_MONTH",))
    dp = make_dp(config, gated_router())

    await dp.feed_update(bot, updates.command("predict"))

    assert texts_sent(session) == [get_text("paywall", "en", config, product="Predictions")]
    assert [data for _, data in buttons_sent(session)] == [BuyOffer(sku="PACK_10").pack()]


async def test_a_subscription_containing_the_product_beats_the_fallback(make_dp, bot, session,
                                                                        updates, monthly):
    config = BillingConfig(subscription_offers=("PREDICT_MONTH",),
                           paywall_fallback=("OTHER_5",))
    dp = make_dp(config, gated_router())

    await dp.feed_update(bot, updates.command("predict"))

    assert texts_sent(session) == [get_text("paywall_subscribe", "en", config,
                                            product="Predictions")]
    assert [data for _, data in buttons_sent(session)] == [
        SubscribeOffer(sku="PREDICT_MONTH").pack()]


async def test_a_subscription_without_the_product_changes_nothing(make_dp, bot, session,
                                                                  updates, other_monthly):
    config = BillingConfig(subscription_offers=("OTHER_MONTH",))
    dp = make_dp(config, gated_router())

    await dp.feed_update(bot, updates.command("predict"))

    assert texts_sent(session) == [get_text("paywall_no_offers", "en", config,
                                            product="Predictions")]
    assert buttons_sent(session) == []


async def test_a_callback_answered_already_still_gets_the_text(bot, session, updates):
    """Telegram refuses a second answer to a callback query (the handler answered it before it
    raised): the user is still told, the refusal only logged."""
    from bot_kit.paywall import notify

    session.fail("answerCallbackQuery", description="Bad Request: query is too old and response"
                 " timeout expired or query ID is invalid")
    query = updates.callback("bk_buy:X").callback_query

    assert await notify(query, bot, "Not enough credits") is True
    assert texts_sent(session) == ["Not enough credits"]
    assert len(session.calls_to("answerCallbackQuery")) == 1
