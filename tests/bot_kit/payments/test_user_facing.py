"""Issue 15, black-box: what a Russian- or English-speaking user (and the host) is told.

Over the loopback Bot API with real polling: a ru user sees no Latin product, offer or state
word in any message, invoice field or button, an en user no Cyrillic; a subscription renewed
(and redelivered) shows the end of the renewed period once; a second subscription is declined;
a failed renewal and a refunded renewal are told once, and the refund cancels the subscription
at Telegram with the first charge id. Faster ``feed_update`` tests cover the rest.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot, Dispatcher, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters import Command
from aiogram.types import Message, TelegramObject
from aiogram.utils.i18n import I18n, I18nMiddleware
from asgiref.sync import sync_to_async
from django.utils import timezone

from bot_kit.callbacks import BuyOffer, SubscribeOffer
from bot_kit.config import BillingConfig
from bot_kit.decorators import requires_quota
from bot_kit.events import payment_refunded
from bot_kit.models import StarSubscription, TelegramPayment
from bot_kit.payments.subscription_handlers import SubscriptionAction
from bot_kit.testing import FakeBotAPIServer, FakeSession, UpdateFactory
from tests.bot_kit.payments.conftest import SECRETS
from tests.bot_kit.payments.flows import pre_checkout, texts_sent

pytestmark = pytest.mark.django_db(transaction=True)
DAY = 86400
LATIN = re.compile(r"[A-Za-z]")
CYRILLIC = re.compile(r"[А-Яа-яЁё]")
TEST_LOCALES = str(Path(__file__).resolve().parents[1] / "locale")


@pytest.fixture
def config() -> BillingConfig:  # overrides the package fixture: callbacks recorded
    return BillingConfig(offers=("STARS_10", "USD_PACK"), signing_secrets=SECRETS,
                         subscription_offers=("PRO_MONTH",), precheckout_timeout=0.5,
                         default_language="en")


@pytest.fixture
def translated(catalog: dict) -> dict:
    """The package catalog with Russian names and descriptions."""
    names = {
        "credits": {"ru": {"name": "Кредиты"}},
        "pro": {"ru": {"name": "Доступ Про"}},
        "stars": {"ru": {"name": "10 кредитов", "description": "Десять кредитов для бота"}},
        "usd": {"ru": {"name": "100 кредитов"}},
        "month": {"ru": {"name": "Про на месяц", "description": "Доступ Про на 30 дней"}},
    }
    for key, translations in names.items():
        obj = catalog[key]
        obj.translations = translations
        obj.save()
    return catalog


class Recorder:
    """Every host callback, by name."""

    def __init__(self) -> None:
        self.calls: dict[str, list[Any]] = {}

    def __call__(self, name: str) -> Any:
        async def record(event: Any) -> None:
            self.calls.setdefault(name, []).append(event)

        return record

    def config(self, config: BillingConfig, **changes: Any) -> BillingConfig:
        from dataclasses import replace

        return replace(config, on_paid=self("paid"), on_refunded=self("refunded"),
                       on_subscription_changed=self("subscription"),
                       on_quota_exhausted=self("quota"), **changes)


def host_router() -> Router:
    router = Router(name="host")

    @router.message(Command("spend"))
    @requires_quota("CREDITS")
    async def spend(message: Message) -> None:
        await message.answer("ok")

    @router.message(Command("pro"))
    @requires_quota("PRO")
    async def pro(message: Message) -> None:
        await message.answer("ok")

    return router


def seen_by_user(server_calls: list[Any]) -> list[str]:
    """Every text a user can read: messages, buttons, invoice fields, pre-checkout errors."""
    found: list[str] = []
    for call in server_calls:
        params = call.params
        if call.method == "sendMessage":
            found.append(str(params.get("text", "")))
            markup = params.get("reply_markup") or {}
            found.extend(str(b["text"]) for row in markup.get("inline_keyboard", []) for b in row)
        elif call.method in ("sendInvoice", "createInvoiceLink"):
            found += [str(params["title"]), str(params["description"])]
            found += [str(p["label"]) for p in params["prices"]]
        elif call.method == "answerPreCheckoutQuery" and params.get("error_message"):
            found.append(str(params["error_message"]))
    return found


def words(text: str, charge_ids: tuple[str, ...]) -> str:
    """``text`` without what is not language: commands, charge ids, placeholders-free marks."""
    for charge in charge_ids:
        text = text.replace(charge, "")
    return re.sub(r"/\w+|[⭐—#]", "", text)


class Loopback:
    """A Dispatcher polling the loopback fake Bot API."""

    def __init__(self, dp: Dispatcher, server: FakeBotAPIServer) -> None:
        self.dp, self.server = dp, server
        self.bot = Bot("42:TEST", session=AiohttpSession(
            api=TelegramAPIServer.from_base(server.url)))
        self.task: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> Loopback:
        self.task = asyncio.create_task(self.dp.start_polling(self.bot, handle_signals=False))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.dp.stop_polling()
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout=10)
        await self.bot.session.close()

    def count(self, method: str) -> int:
        return len([c for c in self.server.calls if c.method == method])

    async def send(self, update: Any, method: str = "sendMessage", more: int = 1) -> Any:
        """Put ``update``; wait until ``method`` was called ``more`` more times."""
        target = self.count(method) + more
        self.server.put_update(update)
        return await self.server.wait_for_call(method, timeout=10, count=target)

    async def settle(self, update: Any) -> None:
        """Put ``update`` that must answer nothing; wait until polling confirmed it."""
        self.server.put_update(update)
        wanted = update.update_id + 1
        for _ in range(200):
            if self.server.confirmed_offset >= wanted:
                await asyncio.sleep(0.2)  # the handler runs after the fetch that confirms it
                return
            await asyncio.sleep(0.05)
        raise AssertionError("update not consumed")


async def purchase_story(loop: Loopback, updates: UpdateFactory, user: Any) -> None:
    """Catalog, invoice, pre-checkout, payment, balance, paywall, subscription, status."""
    await loop.send(updates.command("buy", user=user))
    invoice = (await loop.send(updates.callback(BuyOffer(sku="STARS_10").pack(), user=user),
                               "sendInvoice")).params
    answer = await loop.send(updates.pre_checkout(payload=invoice["payload"], total_amount=50,
                                                  user=user), "answerPreCheckoutQuery")
    assert answer.params["ok"] is True
    await loop.send(updates.successful_payment(payload=invoice["payload"], total_amount=50,
                                               charge_id=f"c{user.id}", user=user))
    await loop.send(updates.command("balance", user=user))
    await loop.send(updates.command("pro", user=user))  # the paywall: PRO is not for sale
    await loop.send(updates.command("subscribe", user=user))  # the link's message
    link = [c for c in loop.server.calls if c.method == "createInvoiceLink"][-1].params
    await loop.send(updates.successful_payment(
        payload=link["payload"], total_amount=100, charge_id=f"s{user.id}", user=user,
        is_recurring=True, is_first_recurring=True,
        subscription_expiration_date=int(time.time()) + 30 * DAY))
    await loop.send(updates.command("subscribe", user=user))
    await loop.send(updates.command("balance", user=user))
    declined = await loop.send(updates.pre_checkout(payload=link["payload"], total_amount=100,
                                                    user=user), "answerPreCheckoutQuery")
    assert declined.params["ok"] is False
    await loop.send(updates.subscription(state="failed", payload=link["payload"], user=user))


@pytest.mark.slow
async def test_ru_user_reads_no_latin_and_en_user_no_cyrillic_over_loopback_polling(
        make_dp: Any, config: BillingConfig, updates: UpdateFactory, translated: dict) -> None:
    dp = make_dp(config, host_router())
    ivan, jane = updates.user(language_code="ru"), updates.user(language_code="en")
    async with FakeBotAPIServer() as server, Loopback(dp, server) as loop:
        await purchase_story(loop, updates, ivan)
        ru_texts = seen_by_user(server.calls)
        before = len(server.calls)
        await purchase_story(loop, updates, jane)
        en_texts = seen_by_user(server.calls[before:])

    assert len(ru_texts) >= 12 and len(en_texts) == len(ru_texts)
    for text in ru_texts:
        assert not LATIN.search(words(text, (f"c{ivan.id}", f"s{ivan.id}"))), text
    for text in en_texts:
        assert not CYRILLIC.search(text), text
    assert "Про на месяц" in ru_texts and "Pro monthly" in en_texts  # invoice title + label
    assert any("«Про на месяц»: активна" in t for t in ru_texts)
    assert any("Pro monthly: active" in t for t in en_texts)
    assert any(t.startswith("У вас уже есть эта подписка") for t in ru_texts)
    assert any(t.startswith("Не удалось списать оплату продления «Про на месяц»")
               for t in ru_texts)


@pytest.mark.slow
async def test_subscription_renewal_refund_and_callbacks_over_loopback_polling(
        make_dp: Any, config: BillingConfig, updates: UpdateFactory, translated: dict) -> None:
    """Subscribe → first payment → renewal 30 days later → the renewal redelivered → /balance
    shows the renewed end once → second subscription declined → ``failed`` told once → the
    renewal refunded (and redelivered): one reversal, one message, one ``on_refunded``, and the
    subscription is cancelled at Telegram with the first charge id."""
    from billable.models import QuotaBatch

    recorder = Recorder()
    dp = make_dp(recorder.config(config))
    refunded_signals: list[Any] = []

    def on_signal(sender: Any, event: Any, **_: Any) -> None:
        refunded_signals.append(event)

    payment_refunded.connect(on_signal)
    ivan = updates.user(language_code="ru")
    start = int(time.time())
    try:
        async with FakeBotAPIServer() as server, Loopback(dp, server) as loop:
            await loop.send(updates.command("subscribe", user=ivan))
            link = server.api.calls[-2].params
            assert server.api.calls[-2].method == "createInvoiceLink"
            assert link["subscription_period"] == 2592000
            assert (await loop.send(updates.pre_checkout(
                payload=link["payload"], total_amount=100, user=ivan),
                "answerPreCheckoutQuery")).params["ok"] is True
            paid = {"payload": link["payload"], "total_amount": 100, "user": ivan,
                    "is_recurring": True}
            await loop.send(updates.successful_payment(
                charge_id="first", is_first_recurring=True,
                subscription_expiration_date=start + 30 * DAY, **paid))
            renewal = updates.successful_payment(charge_id="renewal", is_first_recurring=False,
                                                 subscription_expiration_date=start + 60 * DAY,
                                                 **paid)
            await loop.send(renewal)
            await loop.settle(updates.successful_payment(  # the same renewal, redelivered
                charge_id="renewal", is_first_recurring=False,
                subscription_expiration_date=start + 60 * DAY, **paid))
            balance = (await loop.send(updates.command("balance", user=ivan))).params["text"]
            batches = [b async for b in QuotaBatch.objects.filter(
                product__product_key="PRO").order_by("valid_from")]
            assert len(batches) == 2 and batches[1].valid_from == batches[0].expires_at
            renewed_end = batches[1].expires_at.strftime("%Y-%m-%d")
            assert batches[0].expires_at.strftime("%Y-%m-%d") != renewed_end
            assert balance == f"Ваш баланс:\n• Доступ Про: активно до {renewed_end}"

            declined = await loop.send(updates.pre_checkout(
                payload=link["payload"], total_amount=100, user=ivan), "answerPreCheckoutQuery")
            assert declined.params == {
                "pre_checkout_query_id": declined.params["pre_checkout_query_id"], "ok": False,
                "error_message": "У вас уже есть эта подписка. Управлять ею: /subscribe."}
            again = (await loop.send(updates.command("subscribe", "PRO_MONTH", user=ivan))
                     ).params["text"]
            assert again.startswith("У вас уже есть эта подписка")
            assert loop.count("createInvoiceLink") == 1

            failed = (await loop.send(updates.subscription(
                state="failed", payload=link["payload"], user=ivan))).params["text"]
            assert failed == ("Не удалось списать оплату продления «Про на месяц»; доступ "
                              f"закончится {renewed_end}.")
            messages = loop.count("sendMessage")
            await loop.settle(updates.subscription(state="failed", payload=link["payload"],
                                                   user=ivan))
            assert loop.count("sendMessage") == messages

            refund = updates.refunded_payment(payload=link["payload"], total_amount=100,
                                              charge_id="renewal", user=ivan)
            cancel = await loop.send(refund, "editUserStarSubscription")
            assert cancel.params == {"user_id": ivan.id, "telegram_payment_charge_id": "first",
                                     "is_canceled": True}
            await server.wait_for_call("sendMessage", timeout=10, count=messages + 2)
            await loop.settle(updates.refunded_payment(payload=link["payload"],
                                                       total_amount=100, charge_id="renewal",
                                                       user=ivan))
            sent = [c.params["text"] for c in server.calls if c.method == "sendMessage"]
            assert loop.count("editUserStarSubscription") == 1
    finally:
        payment_refunded.disconnect(on_signal)

    assert sent[messages:] == [
        "Ваш платёж renewal возвращён.",
        "Ваша подписка «Про на месяц» отменена, потому что её платёж возвращён."]
    assert [e.charge_id for e in recorder.calls["refunded"]] == ["renewal"]
    assert [e.charge_id for e in refunded_signals] == ["renewal"]
    assert [(e.charge_id, e.is_renewal) for e in recorder.calls["paid"]] == [
        ("first", False), ("renewal", True)]
    assert [(e.reason, e.state) for e in recorder.calls["subscription"]] == [
        ("subscribed", "active"), ("renewed", "active"), ("failed", "failed"),
        ("refunded", "canceled")]
    payment = await TelegramPayment.objects.aget(charge_id="renewal")
    assert payment.status == "refunded"
    states = [(b.state, b.remaining_quantity) async for b in QuotaBatch.objects.filter(
        product__product_key="PRO").order_by("valid_from")]
    assert states == [("ACTIVE", 1), ("REVOKED", 0)]  # the renewal's period only
    assert (await StarSubscription.objects.aget(telegram_user_id=ivan.id)).state == "canceled"


async def test_cancel_after_renewals_uses_the_first_charge_id(
        make_dp: Any, config: BillingConfig, bot: Bot, session: FakeSession,
        updates: UpdateFactory, translated: dict) -> None:
    recorder = Recorder()
    dp = make_dp(recorder.config(config))
    ivan = updates.user(language_code="ru")
    await dp.feed_update(bot, updates.command("subscribe", user=ivan))
    payload = session.calls_to("createInvoiceLink")[0].params["payload"]
    start = int(time.time())
    for number, charge in enumerate(("first", "second", "third"), start=1):
        await dp.feed_update(bot, updates.successful_payment(
            payload=payload, total_amount=100, user=ivan, charge_id=charge, is_recurring=True,
            is_first_recurring=charge == "first",
            subscription_expiration_date=start + 30 * DAY * number))
    subscription = await StarSubscription.objects.aget(telegram_user_id=ivan.id)
    assert (subscription.renewals, subscription.last_charge_id) == (2, "third")
    await dp.feed_update(bot, updates.callback(
        SubscriptionAction(action="cancel", sub=subscription.pk).pack(), user=ivan))
    [call] = session.calls_to("editUserStarSubscription")
    assert call.params == {"user_id": ivan.id, "telegram_payment_charge_id": "first",
                           "is_canceled": True}
    assert texts_sent(session)[-1].startswith("Подписка отменена; доступ сохранится до ")
    assert [e.reason for e in recorder.calls["subscription"]] == [
        "subscribed", "renewed", "renewed", "canceled"]


async def test_a_second_concurrent_subscription_that_got_through_is_refunded_and_cancelled(
        make_dp: Any, config: BillingConfig, bot: Bot, session: FakeSession,
        updates: UpdateFactory, translated: dict) -> None:
    dp = make_dp(config)
    ivan = updates.user(language_code="ru")
    await dp.feed_update(bot, updates.command("subscribe", user=ivan))
    payload = session.calls_to("createInvoiceLink")[0].params["payload"]
    paid = {"payload": payload, "total_amount": 100, "user": ivan, "is_recurring": True,
            "is_first_recurring": True,
            "subscription_expiration_date": int(time.time()) + 30 * DAY}
    await dp.feed_update(bot, updates.successful_payment(charge_id="one", **paid))
    await dp.feed_update(bot, updates.successful_payment(charge_id="two", **paid))
    second = await TelegramPayment.objects.aget(charge_id="two")
    assert (second.status, second.reason) == ("refunded", "already_subscribed")
    assert [c.params["telegram_payment_charge_id"]
            for c in session.calls_to("refundStarPayment")] == ["two"]
    assert [c.params for c in session.calls_to("editUserStarSubscription")] == [
        {"user_id": ivan.id, "telegram_payment_charge_id": "two", "is_canceled": True}]
    subscription = await StarSubscription.objects.aget(telegram_user_id=ivan.id)
    assert (subscription.first_charge_id, subscription.state) == ("one", "active")


async def test_refunded_payment_redelivered_reverses_once_and_tells_once(
        make_dp: Any, config: BillingConfig, bot: Bot, session: FakeSession,
        updates: UpdateFactory, translated: dict) -> None:
    from tests.bot_kit.payments.flows import balance, pay, request_invoice

    recorder = Recorder()
    dp = make_dp(recorder.config(config))
    jane = updates.user()
    invoice = await request_invoice(dp, bot, session, updates, jane)
    assert (await pre_checkout(dp, bot, session, updates, jane, invoice["payload"], 50))["ok"]
    await pay(dp, bot, updates, jane, invoice, "one-time")
    assert await balance(jane) == 10
    for _ in range(3):
        await dp.feed_update(bot, updates.refunded_payment(
            payload=invoice["payload"], total_amount=50, charge_id="one-time", user=jane))
    assert await balance(jane) == 0
    assert texts_sent(session).count("Your payment one-time was refunded.") == 1
    assert [e.charge_id for e in recorder.calls["refunded"]] == ["one-time"]
    assert session.calls_to("editUserStarSubscription") == []
    assert [e.sku for e in recorder.calls["paid"]] == ["STARS_10"]


async def test_buy_sells_only_configured_offers(make_dp: Any, config: BillingConfig, bot: Bot,
                                               session: FakeSession, updates: UpdateFactory,
                                               translated: dict, make_offer: Any) -> None:
    from billable.models import Order

    await sync_to_async(make_offer)("LOOSE", items=[(translated["credits"], 99)], price="1",
                                    currency="XTR", name="Not for sale")
    dp = make_dp(config)
    ivan = updates.user(language_code="ru")
    for sku in ("PRO_MONTH", "LOOSE", "NOPE", "pro_month"):
        await dp.feed_update(bot, updates.command("buy", sku, user=ivan))
        assert texts_sent(session)[-1] == "Это предложение нельзя купить здесь."
    assert session.calls_to("sendInvoice") == []
    await dp.feed_update(bot, updates.callback(BuyOffer(sku="LOOSE").pack(), user=ivan))
    assert session.calls_to("sendInvoice") == []
    assert await Order.objects.acount() == 0
    await dp.feed_update(bot, updates.command("buy", "stars_10", user=ivan))
    [invoice] = session.calls_to("sendInvoice")
    assert (invoice.params["title"], invoice.params["description"],
            invoice.params["prices"]) == ("10 кредитов", "Десять кредитов для бота",
                                          [{"label": "10 кредитов", "amount": 50}])


async def test_paywall_offers_only_offers_with_the_missing_product(
        make_dp: Any, config: BillingConfig, bot: Bot, session: FakeSession,
        updates: UpdateFactory, translated: dict, make_product: Any,
        make_offer: Any) -> None:
    from dataclasses import replace

    recorder = Recorder()
    other = await sync_to_async(make_product)("OTHER", name="Other",
                                              translations={"ru": {"name": "Другое"}})
    await sync_to_async(make_offer)("OTHER_PACK", items=[(other, 5)], price="5", currency="XTR",
                                    name="Other pack",
                                    translations={"ru": {"name": "Пакет другого"}})
    configured = replace(config, offers=("STARS_10", "OTHER_PACK"))
    dp = make_dp(recorder.config(configured), host_router())
    ivan = updates.user(language_code="ru")
    await dp.feed_update(bot, updates.command("spend", user=ivan))
    markup = session.calls_to("sendMessage")[-1].params["reply_markup"]
    assert [b["callback_data"] for row in markup["inline_keyboard"] for b in row] == [
        BuyOffer(sku="STARS_10").pack()]
    assert texts_sent(session)[-1].startswith("У вас закончилось: «Кредиты».")
    # PRO is in no one-time offer but sold as the PRO_MONTH subscription: the paywall points
    # to it with /subscribe's button, never to an unrelated pack.
    await dp.feed_update(bot, updates.command("pro", user=ivan))
    last = session.calls_to("sendMessage")[-1].params
    assert last["text"] == ("У вас закончилось: «Доступ Про». Оформите подписку, чтобы "
                            "продолжить:")
    assert [(b["text"], b["callback_data"]) for row in last["reply_markup"]["inline_keyboard"]
            for b in row] == [("Про на месяц — 100 ⭐", SubscribeOffer(sku="PRO_MONTH").pack())]
    assert [(e.product_key, e.telegram_user_id) for e in recorder.calls["quota"]] == [
        ("CREDITS", ivan.id), ("PRO", ivan.id)]
    # Sold by nothing: a plain "not available" ...
    session.calls.clear()
    unsold = replace(configured, subscription_offers=())
    await make_dp(unsold, host_router()).feed_update(bot, updates.command("pro", user=ivan))
    last = session.calls_to("sendMessage")[-1].params
    assert last["text"] == "У вас закончилось: «Доступ Про». Сейчас это нельзя купить."
    assert not last.get("reply_markup")
    # ... unless the host configured a fallback (its explicit choice).
    session.calls.clear()
    dp2 = make_dp(replace(unsold, paywall_fallback=("OTHER_PACK",)), host_router())
    await dp2.feed_update(bot, updates.command("pro", user=ivan))
    markup = session.calls_to("sendMessage")[-1].params["reply_markup"]
    assert [b["text"] for row in markup["inline_keyboard"] for b in row] == [
        "Пакет другого — 5 ⭐"]


async def test_host_i18n_middleware_locale_wins_over_telegram_language(
        make_dp: Any, config: BillingConfig, bot: Bot, session: FakeSession,
        updates: UpdateFactory, translated: dict, tmp_path: Path) -> None:
    picked: dict[int, str] = {}

    class PickedLocale(I18nMiddleware):
        """The host keeps the language each user picked in the bot."""

        async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
            user = data.get("event_from_user")
            return picked.get(user.id, "en") if user is not None else "en"

    dp = make_dp(config)
    PickedLocale(I18n(path=tmp_path, default_locale="en", domain="host")).setup(dp)
    jane = updates.user(language_code="en")
    await dp.feed_update(bot, updates.command("buy", user=jane))
    assert texts_sent(session)[-1] == "Choose what to buy:"
    picked[jane.id] = "ru"
    await dp.feed_update(bot, updates.command("buy", user=jane))
    assert texts_sent(session)[-1] == "Выберите, что купить:"
    buttons = session.calls_to("sendMessage")[-1].params["reply_markup"]["inline_keyboard"]
    assert buttons[0][0]["text"] == "10 кредитов — 50 ⭐"


async def test_language_getter_hook_and_a_third_language_catalog(
        make_dp: Any, config: BillingConfig, bot: Bot, session: FakeSession,
        updates: UpdateFactory, translated: dict) -> None:
    from dataclasses import replace

    stored = {}

    async def chosen(tg_user: Any) -> str | None:
        return stored.get(tg_user.id)

    dp = make_dp(replace(config, language_getter=chosen, locale_dirs=(TEST_LOCALES,)))
    ana = updates.user(language_code="eo")
    await dp.feed_update(bot, updates.command("buy", user=ana))
    assert texts_sent(session)[-1] == "Elektu kion aĉeti:"
    stored[ana.id] = "ru"
    await dp.feed_update(bot, updates.command("buy", user=ana))
    assert texts_sent(session)[-1] == "Выберите, что купить:"


async def test_expired_subscription_is_told_at_the_paywall(
        make_dp: Any, config: BillingConfig, bot: Bot, session: FakeSession,
        updates: UpdateFactory, translated: dict) -> None:
    from unittest import mock

    dp = make_dp(config, host_router())
    ivan = updates.user(language_code="ru")
    await dp.feed_update(bot, updates.command("subscribe", user=ivan))
    payload = session.calls_to("createInvoiceLink")[0].params["payload"]
    await dp.feed_update(bot, updates.successful_payment(
        payload=payload, total_amount=100, user=ivan, charge_id="only", is_recurring=True,
        is_first_recurring=True, subscription_expiration_date=int(time.time()) + 30 * DAY))
    with mock.patch("django.utils.timezone.now",
                    return_value=timezone.now() + timedelta(days=31)):
        await dp.feed_update(bot, updates.command("pro", user=ivan))
    assert re.fullmatch(r"Ваша подписка «Про на месяц» закончилась \d{4}-\d\d-\d\d\. "
                        r"Продлить: /subscribe\.", texts_sent(session)[-1])


def test_subscription_price_cap_is_checked_when_the_offer_is_saved(
        translated: dict, config: BillingConfig) -> None:
    from django.core.exceptions import ValidationError

    month = translated["month"]
    month.price = 10000
    month.save()
    month.price = 10001
    with pytest.raises(ValidationError) as caught:
        month.save()
    assert "10000 Stars" in str(caught.value)


def test_subscription_period_is_30_days_outside_the_test_environment() -> None:
    with pytest.raises(ValueError, match="2592000"):
        BillingConfig(subscription_period=300)
    assert BillingConfig(subscription_period=300, test_environment=True).subscription_period \
        == 300


async def test_test_environment_period_reaches_the_invoice_link_and_the_text(
        make_dp: Any, config: BillingConfig, bot: Bot, session: FakeSession,
        updates: UpdateFactory, translated: dict) -> None:
    from dataclasses import replace

    dp = make_dp(replace(config, subscription_period=300, test_environment=True))
    await dp.feed_update(bot, updates.command("subscribe", user=updates.user(
        language_code="ru")))
    assert session.calls_to("createInvoiceLink")[0].params["subscription_period"] == 300
    assert "раз в 5 минут" in texts_sent(session)[-1]


async def test_commands_can_be_renamed_or_disabled(
        make_dp: Any, config: BillingConfig, bot: Bot, session: FakeSession,
        updates: UpdateFactory, translated: dict) -> None:
    from dataclasses import replace

    dp = make_dp(replace(config, commands={"buy": "shop", "balance": None}))
    jane = updates.user()
    await dp.feed_update(bot, updates.command("buy", user=jane))
    await dp.feed_update(bot, updates.command("balance", user=jane))
    assert texts_sent(session) == []
    await dp.feed_update(bot, updates.command("shop", user=jane))
    assert texts_sent(session) == ["Choose what to buy:"]
