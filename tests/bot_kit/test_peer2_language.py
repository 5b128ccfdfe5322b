"""Peer acceptance: every kit message in the user's one language (docs/i18n.md, SPEC §8).

Written from the documentation only. A Russian user must read only Russian (kit sentences,
buttons, invoice texts, pre-checkout answers, notices); an English or unknown-language user only
English; the documented overrides (``language_getter``, aiogram's ``I18n`` context,
``config.texts``, ``locale_dirs``) win in the documented order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiogram import Dispatcher, Router
from aiogram.filters import Command
from aiogram.types import Message
from aiogram.utils.i18n import ConstI18nMiddleware, I18n

from bot_kit import BillingConfig, requires_quota
from bot_kit.callbacks import BuyOffer
from bot_kit.testing import FakeSession, UpdateFactory
from bot_kit.texts import get_plural, get_text, pick_language
from tests.bot_kit.peer import CYRILLIC, assert_no_leak, buttons, everything_said, texts

pytestmark = pytest.mark.django_db

SECRET = "peer2-language-secret-000"
ENGLISH_WORDS = re.compile(r"\b(the|your|you|is|are|has|have|with|for|and|of|no|not|"
                           r"balance|trial|credits?|refund\w*|subscri\w*|payment)\b",
                           re.IGNORECASE)
EO_DIR = str(Path(__file__).resolve().parent / "locale")


def only_russian(said: list[str]) -> None:
    assert said, "the bot said nothing"
    for text in (re.sub(r"/\w+", "", text) for text in said):   # commands stay Latin
        assert CYRILLIC.search(text), f"not Russian: {text!r}"
        assert not ENGLISH_WORDS.search(text), f"English inside Russian: {text!r}"


def only_english(said: list[str]) -> None:
    assert said, "the bot said nothing"
    for text in said:
        assert not CYRILLIC.search(text), f"Russian for an English user: {text!r}"


@pytest.fixture
def shop(make_product: Callable[..., Any], make_offer: Callable[..., Any]) -> dict[str, Any]:
    """``CREDITS`` (translated) in ``PACK_10`` (50 ⭐) and the free ``TRIAL_3``; a translated
    30-day ``PREMIUM`` sold as the subscription ``MONTHLY``."""
    credits = make_product("CREDITS", name="Credits",
                           translations={"ru": {"name": "Кредиты"}})
    premium = make_product("PREMIUM", name="Premium", product_type="period",
                           translations={"ru": {"name": "Премиум"}})
    return {
        "pack": make_offer("PACK_10", items=[(credits, 10)], price="50", currency="XTR",
                           name="10 credits", description="Ten credits for the bot",
                           translations={"ru": {"name": "10 кредитов"}}),
        "trial": make_offer("TRIAL_3", items=[(credits, 3)], price="0", name="Trial",
                            translations={"ru": {"name": "Пробный период"}}),
        "monthly": make_offer("MONTHLY", items=[(premium, 1, "days", 30)], price="100",
                              currency="XTR", name="Premium month",
                              translations={"ru": {"name": "Премиум на месяц"}}),
    }


def gated_router() -> Router:
    router = Router(name="host")

    @router.message(Command("predict"))
    @requires_quota("CREDITS", amount=1)
    async def predict(message: Message) -> None:
        await message.answer("🔮")

    return router


@pytest.fixture
def kit(shop: dict[str, Any], make_dp: Callable[..., Dispatcher]) -> Callable[..., Dispatcher]:
    def build(**fields: Any) -> Dispatcher:
        fields.setdefault("offers", ("PACK_10",))
        fields.setdefault("trial_offer", "TRIAL_3")
        fields.setdefault("subscription_offers", ("MONTHLY",))
        fields.setdefault("signing_secrets", (SECRET,))
        return make_dp(BillingConfig(**fields), gated_router())

    return build


async def tour(dp: Dispatcher, bot: Any, updates: UpdateFactory, user: Any) -> None:
    """What a new user meets first: empty balance, paywall, /buy, /paysupport, /trial, /balance."""
    for name in ("balance", "predict", "buy", "paysupport", "trial", "balance", "subscribe"):
        await dp.feed_update(bot, updates.command(name, user=user))


# -- which language: Telegram's language_code ------------------------------------------------


@pytest.mark.parametrize("code", ["ru", "ru-RU", "RU", "ru_RU"])
async def test_russian_language_codes_get_only_russian(
        code: str, kit: Callable[..., Dispatcher], bot: Any, session: FakeSession,
        updates: UpdateFactory) -> None:
    await tour(kit(), bot, updates, updates.user(language_code=code))

    only_russian(texts(session))
    only_russian([text for text, _ in buttons(session)])
    only_russian([str(c.params["title"]) for c in session.calls_to("createInvoiceLink")])
    assert_no_leak(session)


@pytest.mark.parametrize("code", ["en", "en-GB", None, "", "de", "xx", "zz-ZZ", "русский",
                                  "r", "../ru", "ru/../../en", "\x00ru", "e" * 300])
async def test_unknown_missing_or_garbled_codes_get_the_default_language(
        code: str | None, kit: Callable[..., Dispatcher], bot: Any, session: FakeSession,
        updates: UpdateFactory) -> None:
    await tour(kit(), bot, updates, updates.user(language_code=code))

    only_english(texts(session))
    only_english([text for text, _ in buttons(session)])
    assert_no_leak(session)


async def test_default_language_is_used_for_an_unknown_code(
        kit: Callable[..., Dispatcher], bot: Any, session: FakeSession,
        updates: UpdateFactory) -> None:
    await tour(kit(default_language="ru"), bot, updates, updates.user(language_code="de"))

    only_russian(texts(session))


async def test_a_user_who_switches_telegram_language_is_answered_in_the_new_one(
        kit: Callable[..., Dispatcher], bot: Any, session: FakeSession,
        updates: UpdateFactory) -> None:
    dp = kit()
    user = updates.user(language_code="en")
    await dp.feed_update(bot, updates.command("paysupport", user=user))
    await dp.feed_update(bot, updates.command(
        "paysupport", user=user.model_copy(update={"language_code": "ru"})))

    first, second = texts(session)
    only_english([first])
    only_russian([second])


# -- purchases and payments in Russian ---------------------------------------------------------


async def test_invoice_of_a_russian_user_is_russian(
        kit: Callable[..., Dispatcher], bot: Any, session: FakeSession,
        updates: UpdateFactory) -> None:
    ivan = updates.user(language_code="ru")
    await kit().feed_update(bot, updates.callback(BuyOffer(sku="PACK_10").pack(), user=ivan))

    invoice = session.calls_to("sendInvoice")[-1].params
    assert invoice["title"] == "10 кредитов"
    assert invoice["description"] == "10 кредитов"   # translated name, not the English text
    assert invoice["prices"][0]["label"] == "10 кредитов"


async def test_pre_checkout_refusals_are_in_the_buyers_language(
        kit: Callable[..., Dispatcher], bot: Any, session: FakeSession,
        updates: UpdateFactory) -> None:
    dp = kit()
    ivan, john = updates.user(language_code="ru"), updates.user(language_code="en")
    for user in (ivan, john):
        await dp.feed_update(bot, updates.pre_checkout(payload="garbage", total_amount=50,
                                                       user=user))

    ru, en = (c.params for c in session.calls_to("answerPreCheckoutQuery"))
    assert ru["ok"] is False and en["ok"] is False
    only_russian([ru["error_message"]])
    only_english([en["error_message"]])


@pytest.mark.django_db(transaction=True)
async def test_whole_purchase_and_refund_story_is_russian(
        kit: Callable[..., Dispatcher], bot: Any, session: FakeSession,
        updates: UpdateFactory) -> None:
    admin = updates.user(language_code="en")
    dp = kit(admin_ids=frozenset({admin.id}))
    ivan = updates.user(language_code="ru")
    await dp.feed_update(bot, updates.callback(BuyOffer(sku="PACK_10").pack(), user=ivan))
    payload = session.calls_to("sendInvoice")[-1].params["payload"]
    await dp.feed_update(bot, updates.pre_checkout(payload=payload, total_amount=50, user=ivan))
    await dp.feed_update(bot, updates.successful_payment(payload=payload, total_amount=50,
                                                         charge_id="ru-1", user=ivan))
    await dp.feed_update(bot, updates.command("refund", "ru-1", user=admin))

    to_ivan = [str(c.params["text"]) for c in session.calls_to("sendMessage")
               if c.params["chat_id"] == ivan.id]
    to_admin = [str(c.params["text"]) for c in session.calls_to("sendMessage")
                if c.params["chat_id"] == admin.id]
    assert len(to_ivan) >= 2   # receipt and refunded notice
    only_russian(to_ivan)
    only_english(to_admin)
    assert_no_leak(session)


@pytest.mark.django_db(transaction=True)
async def test_refund_made_by_the_outbox_later_tells_the_user_in_their_stored_language(
        shop: dict[str, Any], make_dp: Callable[..., Dispatcher], bot: Any,
        session: FakeSession, updates: UpdateFactory) -> None:
    from bot_kit.payments.refunds import RefundOutbox, arequest_refund

    config = BillingConfig(offers=("PACK_10",), signing_secrets=(SECRET,))
    dp = make_dp(config)
    ivan = updates.user(language_code="ru")
    await dp.feed_update(bot, updates.callback(BuyOffer(sku="PACK_10").pack(), user=ivan))
    payload = session.calls_to("sendInvoice")[-1].params["payload"]
    await dp.feed_update(bot, updates.successful_payment(payload=payload, total_amount=50,
                                                         charge_id="ru-2", user=ivan))
    before = len(session.calls_to("sendMessage"))
    await arequest_refund("ru-2", reason="support")
    await RefundOutbox(bot, config=config).process_due()

    notices = [str(c.params["text"]) for c in session.calls_to("sendMessage")[before:]]
    assert len(notices) == 1
    only_russian(notices)


# -- subscriptions in Russian ------------------------------------------------------------------


async def test_subscription_notices_are_russian(
        kit: Callable[..., Dispatcher], bot: Any, session: FakeSession,
        updates: UpdateFactory) -> None:
    dp = kit()
    ivan = updates.user(language_code="ru")
    await dp.feed_update(bot, updates.command("subscribe", user=ivan))
    link = session.calls_to("createInvoiceLink")[-1].params
    await dp.feed_update(bot, updates.successful_payment(
        payload=link["payload"], total_amount=100, charge_id="sub-ru", user=ivan,
        is_recurring=True, is_first_recurring=True, subscription_expiration_date=2_000_000_000))
    for state in ("canceled", "active", "failed"):
        await dp.feed_update(bot, updates.subscription(state=state, payload=link["payload"],
                                                       user=ivan))
    await dp.feed_update(bot, updates.command("subscribe", user=ivan))

    said = texts(session)
    assert len(said) >= 5
    only_russian(said)
    only_russian([text for text, _ in buttons(session)])
    assert link["title"] == "Премиум на месяц"


# -- documented overrides ----------------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_language_getter_wins_over_telegram_language_code(
        asynchronous: bool, kit: Callable[..., Dispatcher], bot: Any, session: FakeSession,
        updates: UpdateFactory) -> None:
    picked = {}

    def sync_getter(telegram_user: Any) -> str | None:
        return picked.get(telegram_user.id)

    async def async_getter(telegram_user: Any) -> str | None:
        return picked.get(telegram_user.id)

    dp = kit(language_getter=async_getter if asynchronous else sync_getter)
    john, mary = updates.user(language_code="en"), updates.user(language_code="en")
    picked[john.id] = "ru"
    await tour(dp, bot, updates, john)
    john_said = texts(session)
    await dp.feed_update(bot, updates.command("paysupport", user=mary))  # None: no preference

    only_russian(john_said)
    only_english(texts(session)[len(john_said):])


async def test_language_getter_that_fails_does_not_silence_the_bot(
        kit: Callable[..., Dispatcher], bot: Any, session: FakeSession,
        updates: UpdateFactory) -> None:
    def broken(telegram_user: Any) -> str | None:
        raise RuntimeError("user table is down")

    dp = kit(language_getter=broken)
    try:
        await dp.feed_update(bot, updates.command("paysupport",
                                                  user=updates.user(language_code="ru")))
    except RuntimeError:
        pass
    said = texts(session)
    assert said, "/paysupport always answers"
    assert_no_leak(session)


async def test_aiogram_i18n_context_wins_over_telegram_language_code(
        kit: Callable[..., Dispatcher], bot: Any, session: FakeSession,
        updates: UpdateFactory, tmp_path: Path) -> None:
    (tmp_path / "ru" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "en" / "LC_MESSAGES").mkdir(parents=True)
    dp = kit()
    ConstI18nMiddleware(locale="ru", i18n=I18n(path=tmp_path, default_locale="en",
                                               domain="host")).setup(dp)
    await tour(dp, bot, updates, updates.user(language_code="en"))

    only_russian(texts(session))


async def test_language_getter_wins_over_the_i18n_context(
        kit: Callable[..., Dispatcher], bot: Any, session: FakeSession,
        updates: UpdateFactory, tmp_path: Path) -> None:
    (tmp_path / "ru" / "LC_MESSAGES").mkdir(parents=True)
    dp = kit(language_getter=lambda user: "en")
    ConstI18nMiddleware(locale="ru", i18n=I18n(path=tmp_path, default_locale="ru",
                                               domain="host")).setup(dp)
    await tour(dp, bot, updates, updates.user(language_code="ru"))

    only_english(texts(session))


async def test_text_override_changes_one_sentence_in_one_language(
        kit: Callable[..., Dispatcher], bot: Any, session: FakeSession,
        updates: UpdateFactory) -> None:
    dp = kit(texts={"ru": {"paysupport": "Пишите @pomoshch"}})
    await dp.feed_update(bot, updates.command("paysupport",
                                              user=updates.user(language_code="ru")))
    await dp.feed_update(bot, updates.command("paysupport",
                                              user=updates.user(language_code="en")))

    ru, en = texts(session)
    assert ru == "Пишите @pomoshch"
    assert en != ru
    only_english([en])


@pytest.mark.parametrize("override", ["Balance: {nothing}", "Broken {", "Also broken }",
                                      "{0} {}", "{product.__class__}"])
async def test_a_malformed_override_is_shown_and_never_crashes(
        override: str, kit: Callable[..., Dispatcher], bot: Any, session: FakeSession,
        updates: UpdateFactory) -> None:
    dp = kit(texts={"en": {"paysupport": override, "balance_empty": override,
                           "paywall": override}})
    for name in ("paysupport", "balance", "predict"):
        await dp.feed_update(bot, updates.command(name))

    said = texts(session)
    assert len(said) == 3
    assert_no_leak(session)
    assert all("class" not in text or text == override for text in said)


async def test_host_catalog_adds_a_language_and_falls_back_to_the_default(
        kit: Callable[..., Dispatcher], bot: Any, session: FakeSession,
        updates: UpdateFactory) -> None:
    config = BillingConfig(locale_dirs=[EO_DIR], signing_secrets=(SECRET,))
    assert pick_language("eo", config) == "eo"
    dp = kit(locale_dirs=[EO_DIR])
    await tour(dp, bot, updates, updates.user(language_code="eo"))

    said = everything_said(session)
    assert said
    assert not any(CYRILLIC.search(text) for text in said)
    assert_no_leak(session)


# -- the text functions ------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "expected"), [
    ("ru", "ru"), ("ru-RU", "ru"), ("en", "en"), ("de", "en"), (None, "en"), ("", "en"),
    ("../ru", "en"), ("xx-YY-zz", "en")])
def test_pick_language(code: str | None, expected: str) -> None:
    assert pick_language(code, BillingConfig()) == expected


@pytest.mark.parametrize(("count", "expected"), [
    (1, "1 день"), (2, "2 дня"), (5, "5 дней"), (11, "11 дней"), (21, "21 день"),
    (22, "22 дня"), (30, "30 дней")])
def test_russian_plural_forms(count: int, expected: str) -> None:
    assert get_plural("period_days", count, "ru") == expected


def test_unknown_text_key_falls_back_to_the_key_itself() -> None:
    assert get_text("no_such_key_anywhere", "ru") == "no_such_key_anywhere"


def test_english_and_russian_differ_for_every_documented_key() -> None:
    keys = ("paywall", "paysupport", "balance_empty", "trial_already_used", "buy_empty",
            "refunded_notice", "subscription_canceled_notice", "subscription_resumed",
            "subscription_failed", "precheckout_wrong_bot", "precheckout_invalid",
            "precheckout_already_subscribed", "subscription_expired")
    for key in keys:
        en, ru = get_text(key, "en"), get_text(key, "ru")
        assert en != key and ru != key, key
        assert CYRILLIC.search(ru) and not CYRILLIC.search(en), key



def test_get_text_fills_plain_names_and_shows_the_rest_as_typed() -> None:
    config = BillingConfig(texts={"en": {"paywall": "{product} {{x}} {product.__class__} {"}})
    assert get_text("paywall", "en", config, product="Credits") == \
        "Credits {x} {product.__class__} {"
    assert get_text("paywall", "en", BillingConfig(texts={"en": {"paywall": "{product}!"}}),
                    product="Credits") == "Credits!"


async def test_an_invoice_telegram_refuses_is_answered_in_the_buyers_language(
        kit: Callable[..., Dispatcher], bot: Any, session: FakeSession,
        updates: UpdateFactory) -> None:
    dp = kit()
    for code in ("ru", "en"):
        session.fail("sendInvoice", status=400, description="Bad Request: CURRENCY_INVALID")
        await dp.feed_update(bot, updates.callback(BuyOffer(sku="PACK_10").pack(),
                                                   user=updates.user(language_code=code)))

    ru, en = texts(session)
    only_russian([ru])
    only_english([en])
    assert_no_leak(session)
    assert "CURRENCY_INVALID" not in ru + en
