"""Kit paths that real Telegram would refuse, run against the strict fake Bot API.

* buttons of offers whose SKU does not fit 64 bytes of callback data (long, non-ASCII): the
  paywall, ``/buy``, ``/subscribe``, ``/gift``, ``/promo`` and alert keyboards carry a short
  reference instead, and pressing it sells the offer; short SKUs keep the old form;
* one answer per callback query on every path that answers and then fails;
* texts within 4096 characters (``/balance`` of many products in parts, a host's long
  override cut), never empty (a blank override falls back);
* a declined pre-checkout always carries a message, and a redelivered one does not fail;
* a bot whose default parse mode is HTML still gets every kit text through (the kit sends plain
  text, so an offer named ``<Pro>`` is not markup).

The ``session`` fixture fails any test whose calls the strict fake refused.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from aiogram import Bot, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.filters import Command
from aiogram.types import Message
from asgiref.sync import sync_to_async

from billable.models import ExternalIdentity
from billable.services import TransactionService
from bot_kit.alerts import _markup
from bot_kit.billing import OfferView
from bot_kit.callbacks import (
    BuyOffer,
    BuyOfferRef,
    SubscribeOfferRef,
    offer_sku,
    sku_ref,
)
from bot_kit.config import BillingConfig
from bot_kit.decorators import requires_quota
from bot_kit.handlers.gifts import GiftOfferRef
from bot_kit.handlers.promo import PromoOfferRef
from bot_kit.payments.precheckout import answer_pre_checkout
from bot_kit.testing import FakeSession, UpdateFactory
from bot_kit.texts import MESSAGE_LIMIT, fit_text, get_text, split_message
from tests.bot_kit.helpers import buttons_sent, texts_sent

pytestmark = pytest.mark.django_db(transaction=True)

SECRETS = ("fidelity-secret-0123456789",)
#: 44 Cyrillic letters: 88 bytes, far over 64 with any prefix (Offer.sku allows 50 characters).
LONG_SKU = "ПАКЕТ_ПРЕДСКАЗАНИЙ_НА_ЦЕЛЫЙ_МЕСЯЦ_СО_СКИДКОЙ"


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def gated_router() -> Router:
    router = Router()

    @router.message(Command("predict"))
    @requires_quota("PREDICTIONS")
    async def predict(message: Message) -> None:
        await message.answer("prediction: sunny")

    return router


@pytest.fixture
def long_offer(catalog: dict[str, Any], make_offer: Callable[..., Any]) -> Any:
    return make_offer(LONG_SKU, items=[(catalog["product"], 30)], price="100", currency="XTR",
                      name="30 предсказаний")


def all_callback_data(session: FakeSession) -> list[str]:
    return [data for _, data in buttons_sent(session)]


def test_a_long_non_ascii_sku_needs_the_short_form() -> None:
    assert len(LONG_SKU) <= 50 and len(LONG_SKU.encode()) > 64
    with pytest.raises(ValueError):  # what aiogram does with the SKU form: the old defect
        BuyOffer(sku=LONG_SKU).pack()
    ref = sku_ref(LONG_SKU)
    assert ref == sku_ref(f" {LONG_SKU.lower()} ") and len(ref) == 12
    assert offer_sku(BuyOfferRef(ref=ref), ["PACK_10", LONG_SKU]) == LONG_SKU
    assert offer_sku(BuyOfferRef(ref=ref), ["PACK_10"]) == ref  # unknown: refused as unsellable
    assert offer_sku(BuyOffer(sku="PACK_10"), []) == "PACK_10"


async def test_paywall_of_a_long_sku_offer_sells_it(make_dp, bot, session, updates, catalog,
                                                    long_offer):
    config = BillingConfig(offers=(LONG_SKU, "PACK_10"), signing_secrets=SECRETS)
    dp = make_dp(config, gated_router())
    user = updates.user(language_code="ru")

    await dp.feed_update(bot, updates.command("predict", user=user))

    data = all_callback_data(session)
    assert data == [BuyOfferRef(ref=sku_ref(LONG_SKU)).pack(),
                    BuyOffer(sku="PACK_10").pack()]  # a short SKU keeps the old form
    assert all(len(d.encode()) <= 64 for d in data)
    await dp.feed_update(bot, updates.callback(data[0], user=user))
    [invoice] = session.calls_to("sendInvoice")
    assert invoice.params["prices"] == [{"label": "30 предсказаний", "amount": 100}]
    # a button sent before the change (SKU form) still sells
    await dp.feed_update(bot, updates.callback(BuyOffer(sku="PACK_10").pack(), user=user))
    assert session.calls_to("sendInvoice")[-1].params["prices"][0]["amount"] == 50
    assert len(session.calls_to("answerCallbackQuery")) == 2


async def test_buy_catalog_and_alert_buttons_of_a_long_sku_fit(make_dp, bot, session, updates,
                                                               catalog, long_offer):
    config = BillingConfig(offers=(LONG_SKU,), signing_secrets=SECRETS)
    dp = make_dp(config)

    await dp.feed_update(bot, updates.command("buy"))

    expected = BuyOfferRef(ref=sku_ref(LONG_SKU)).pack()
    assert all_callback_data(session) == [expected]
    view = OfferView(sku=LONG_SKU, name="", price=Decimal("100"), currency="XTR")
    markup = _markup([view], "en", config)
    assert markup is not None
    [[button]] = markup.inline_keyboard
    assert button.callback_data == expected and button.text.strip()


async def test_subscribe_button_of_a_long_sku_sends_the_link(make_dp, bot, session, updates,
                                                             catalog, long_offer):
    config = BillingConfig(subscription_offers=(LONG_SKU,), signing_secrets=SECRETS)
    dp = make_dp(config, gated_router())
    user = updates.user()

    await dp.feed_update(bot, updates.command("predict", user=user))

    [data] = all_callback_data(session)
    assert data == SubscribeOfferRef(ref=sku_ref(LONG_SKU)).pack()
    await dp.feed_update(bot, updates.callback(data, user=user))
    [link] = session.calls_to("createInvoiceLink")
    assert link.params["subscription_period"] == config.subscription_period
    assert len(session.calls_to("answerCallbackQuery")) == 1


async def test_gift_and_promo_buttons_of_a_long_sku_sell_it(make_dp, bot, session, updates,
                                                            catalog, long_offer):
    from billable.models import PromoCode

    await sync_to_async(PromoCode.objects.create)(code="HALF", kind="percent", percent_off=50)
    config = BillingConfig(offers=(LONG_SKU,), gift_offers=(LONG_SKU,), signing_secrets=SECRETS)
    dp = make_dp(config)
    user = updates.user()

    await dp.feed_update(bot, updates.command("gift", user=user))
    await dp.feed_update(bot, updates.command("promo", "HALF", user=user))

    gift, promo = all_callback_data(session)
    assert gift == GiftOfferRef(ref=sku_ref(LONG_SKU)).pack()
    assert promo == PromoOfferRef(code="HALF", ref=sku_ref(LONG_SKU)).pack()
    await dp.feed_update(bot, updates.callback(gift, user=user))
    await dp.feed_update(bot, updates.callback(promo, user=user))
    amounts = [c.params["prices"][0]["amount"] for c in session.calls_to("sendInvoice")]
    assert amounts == [100, 50]


@pytest.mark.parametrize("data", ["bk_buy:NOPE", BuyOfferRef(ref="AAAAAAAAAAAA").pack(),
                                  "bk_sub:NOPE", "bk_gift:NOPE"])
async def test_a_failing_button_is_answered_once_and_explained(make_dp, bot, session, updates,
                                                               catalog, data):
    """The handler answers the button, then the sale fails: the error handler tells the user
    without answering the query a second time (Telegram would refuse it)."""
    config = BillingConfig(offers=("PACK_10",), signing_secrets=SECRETS)
    dp = make_dp(config)

    await dp.feed_update(bot, updates.callback(data))

    assert len(session.calls_to("answerCallbackQuery")) == 1
    assert texts_sent(session) == [get_text("error_not_purchasable", "en", config)]


@pytest.fixture
def everything(make_product: Callable[..., Any], make_offer: Callable[..., Any]) -> Any:
    """One offer of 60 products with names of 96 characters (the most is 100): a wallet over
    4096 characters."""
    products = [make_product(f"P{n:02d}", name=f"Продукт {n:02d} " + "ж" * 85)
                for n in range(60)]
    return make_offer("EVERYTHING", items=[(p, 1) for p in products])


@pytest.fixture
def pro_offer(catalog: dict[str, Any], make_offer: Callable[..., Any]) -> Any:
    return make_offer("PRO_1", items=[(catalog["product"], 1)], price="5", currency="XTR",
                      name="<Pro> & more")


async def test_balance_of_many_products_is_sent_whole_in_parts(make_dp, bot, session, updates,
                                                               everything):
    offer = everything
    dp = make_dp(BillingConfig())
    tg = updates.user()
    await dp.feed_update(bot, updates.command("balance", user=tg))  # registers the user
    user_id = await ExternalIdentity.objects.filter(external_id=str(tg.id)).values_list(
        "user_id", flat=True).aget()
    await TransactionService.agrant_offer(user_id, offer)

    await dp.feed_update(bot, updates.command("balance", user=tg))

    parts = texts_sent(session)[1:]
    assert len(parts) > 1 and all(utf16(p) <= MESSAGE_LIMIT for p in parts)
    assert all(f"Продукт {n:02d}" in "\n".join(parts) for n in range(60))


async def test_a_long_host_override_is_cut_and_a_blank_one_falls_back(make_dp, bot, session,
                                                                      updates):
    config = BillingConfig(texts={"en": {"paysupport": "😀" * 3000, "buy_empty": "  "}})
    dp = make_dp(config)

    await dp.feed_update(bot, updates.command("paysupport"))
    await dp.feed_update(bot, updates.command("buy"))

    cut, fallback = texts_sent(session)
    assert utf16(cut) <= MESSAGE_LIMIT and cut.endswith("…") and cut.startswith("😀")
    assert fallback == get_text("buy_empty", "en") and fallback.strip()


def test_fit_text_and_split_message_cut_between_characters() -> None:
    assert fit_text("ab", 2) == "ab"
    assert fit_text("a😀b", 3) == "a…"  # the pair is kept whole or dropped whole
    assert fit_text("😀😀", 3) == "😀…"
    assert split_message("aa\nbb\ncc", 5) == ["aa\nbb", "cc"]
    assert split_message("x" * 7, 5) == ["xxxx…"]
    assert split_message("", 5) == []


async def test_a_declined_pre_checkout_always_has_a_message(bot, session, updates, catalog):
    async def blank(query: Any, order: Any) -> str:
        return "   "

    config = BillingConfig(offers=("PACK_10",), signing_secrets=SECRETS,
                           precheckout_validator=blank)
    query = updates.pre_checkout(payload="garbage", total_amount=50).pre_checkout_query
    assert query is not None

    assert await answer_pre_checkout(query.as_(bot), config) is False
    # the same query delivered again (the answer was not confirmed): Telegram refuses a second
    # answer; the kit logs it instead of failing the update
    assert await answer_pre_checkout(query.as_(bot), config) is False

    first = session.calls_to("answerPreCheckoutQuery")[0].params
    assert first["ok"] is False and first["error_message"].strip()
    assert len(session.refused) == 1
    session.refused.clear()  # the second answer's refusal was the point of this test


async def test_a_bot_with_html_default_still_gets_every_kit_text_through(
        make_dp, updates, pro_offer):
    """The kit sends plain text (``parse_mode=None``): names with ``<``/``&`` are not markup."""
    session = FakeSession()
    bot = Bot("42:TEST", session=session, default=DefaultBotProperties(parse_mode="HTML"))
    config = BillingConfig(offers=("PRO_1",), signing_secrets=SECRETS)
    dp = make_dp(config, gated_router())
    user = updates.user()

    await dp.feed_update(bot, updates.command("buy", user=user))
    await dp.feed_update(bot, updates.command("predict", user=user))
    await dp.feed_update(bot, updates.command("balance", user=user))
    await dp.feed_update(bot, updates.callback(all_callback_data(session)[0], user=user))

    assert session.refused == []
    assert len(session.calls_to("sendInvoice")) == 1
    assert "<Pro> & more" in " ".join(text for text, _ in buttons_sent(session))


async def test_updates_from_one_factory_per_test_are_answered_independently(
        make_dp, catalog) -> None:
    """Callback query ids repeat across tests (each factory counts from 1); the kit's record of
    answered queries is per bot session, so a new session answers them again."""
    config = BillingConfig(offers=("PACK_10",), signing_secrets=SECRETS)
    for _ in range(2):
        session = FakeSession()
        bot = Bot("42:TEST", session=session)
        await make_dp(config).feed_update(bot, UpdateFactory().callback("bk_buy:PACK_10"))
        assert len(session.calls_to("answerCallbackQuery")) == 1
        assert session.refused == []


@pytest.fixture
def pricey_monthly(catalog: dict[str, Any], make_offer: Callable[..., Any]) -> Any:
    """A subscription offer over Telegram's 10000 ⭐ limit for subscriptions."""
    return make_offer("HUGE_MONTH", items=[(catalog["product"], 100)], price="20000",
                      currency="XTR", name="Everything")


async def test_a_subscription_telegram_refuses_is_explained(make_dp, bot, session, updates,
                                                            pricey_monthly):
    """Telegram refuses a subscription link over 10000 ⭐ (the strict fake too): the kit checks
    first, so it never asks; the user is told the offer cannot be bought here (one answer)."""
    config = BillingConfig(subscription_offers=("HUGE_MONTH",), signing_secrets=SECRETS)
    dp = make_dp(config, gated_router())
    user = updates.user()
    await dp.feed_update(bot, updates.command("predict", user=user))
    [data] = all_callback_data(session)

    await dp.feed_update(bot, updates.callback(data, user=user))

    assert session.calls_to("createInvoiceLink") == []
    assert texts_sent(session)[-1] == get_text("error_not_purchasable", "en", config)
    assert len(session.calls_to("answerCallbackQuery")) == 1
