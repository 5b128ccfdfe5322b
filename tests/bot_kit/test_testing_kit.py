"""bot_kit.testing: the fake session, the update builders and the loopback HTTP server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiogram import Bot, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter, TelegramServerError
from aiogram.filters import Command
from aiogram.types import LabeledPrice, Message, Update

from billable.models import ExternalIdentity
from billable.services import TransactionService
from bot_kit.config import BillingConfig
from bot_kit.decorators import requires_quota
from bot_kit.testing import FakeAPIError, FakeBotAPIServer, FakeSession, UpdateFactory, make_bot
from bot_kit.testing.updates import update_to_json


async def test_session_records_calls_and_answers_realistically(bot: Bot,
                                                               session: FakeSession) -> None:
    me = await bot.get_me()
    sent = await bot.send_message(chat_id=7, text="hi")
    invoice = await bot.send_invoice(chat_id=7, title="Pack", description="10 predictions",
                                     payload="p", currency="XTR",
                                     prices=[LabeledPrice(label="Pack", amount=50)])
    link = await bot.create_invoice_link(title="Pro", description="monthly", payload="s",
                                         currency="XTR", subscription_period=2592000,
                                         prices=[LabeledPrice(label="Pro", amount=100)])

    assert (me.id, me.is_bot, bot.id) == (42, True, 42)
    assert (sent.chat.id, sent.text, sent.from_user.id) == (7, "hi", 42)
    assert invoice.invoice is not None and invoice.invoice.total_amount == 50
    assert link.startswith("https://t.me/$")
    assert [c.method for c in session.calls] == ["getMe", "sendMessage", "sendInvoice",
                                                 "createInvoiceLink"]
    assert session.calls_to("createInvoiceLink")[0].params["subscription_period"] == 2592000
    assert await bot.answer_pre_checkout_query(pre_checkout_query_id="1", ok=True) is True
    assert await bot.refund_star_payment(user_id=7, telegram_payment_charge_id="c") is True
    assert await bot.edit_user_star_subscription(user_id=7, telegram_payment_charge_id="c",
                                                 is_canceled=True) is True
    assert (await bot.get_star_transactions()).transactions == []


async def test_session_replays_queued_failures_per_method(bot: Bot,
                                                          session: FakeSession) -> None:
    session.fail(method="refundStarPayment", status=429, retry_after=1)
    session.fail(method="refundStarPayment", status=500)
    session.fail(method="refundStarPayment", status=400,
                 description="Bad Request: CHARGE_ALREADY_REFUNDED")

    with pytest.raises(TelegramRetryAfter) as retry:
        await bot.refund_star_payment(user_id=7, telegram_payment_charge_id="c")
    assert await bot.send_message(chat_id=7, text="other methods are unaffected")
    with pytest.raises(TelegramServerError):
        await bot.refund_star_payment(user_id=7, telegram_payment_charge_id="c")
    with pytest.raises(TelegramBadRequest, match="CHARGE_ALREADY_REFUNDED"):
        await bot.refund_star_payment(user_id=7, telegram_payment_charge_id="c")

    assert retry.value.retry_after == 1
    assert await bot.refund_star_payment(user_id=7, telegram_payment_charge_id="c") is True
    assert len(session.calls_to("refundStarPayment")) == 4


async def test_custom_responder(bot: Bot, session: FakeSession) -> None:
    def transactions(params: dict[str, Any]) -> Any:
        if params.get("offset"):
            raise FakeAPIError(400, "Bad Request: offset too large")
        return {"transactions": [{"id": "t1", "amount": 50, "date": 1_700_000_000}]}

    session.respond("getStarTransactions", transactions)

    result = await bot.get_star_transactions()
    with pytest.raises(TelegramBadRequest, match="offset too large"):
        await bot.get_star_transactions(offset=5)

    assert [t.id for t in result.transactions] == ["t1"]


def test_update_builders_cover_every_kit_update() -> None:
    updates = UpdateFactory(start_update_id=10)
    ru = updates.user(language_code="ru")
    built = [
        updates.message("hi", user=ru),
        updates.command("predict", "tomorrow"),
        updates.callback("bk_buy:PACK_10"),
        updates.inline_query("q"),
        updates.pre_checkout(payload="p", total_amount=50),
        updates.successful_payment(payload="p", total_amount=50, is_recurring=True,
                                   is_first_recurring=True,
                                   subscription_expiration_date=1_800_000_000),
        updates.refunded_payment(payload="p", total_amount=50, charge_id="stx1"),
        updates.subscription(state="canceled", payload="p"),
    ]

    assert [u.update_id for u in built] == list(range(10, 18))
    assert [u.event_type for u in built] == [
        "message", "message", "callback_query", "inline_query", "pre_checkout_query",
        "message", "message", "subscription"]
    assert built[0].message.from_user.language_code == "ru"
    assert built[1].message.text == "/predict tomorrow"
    assert built[5].message.successful_payment.is_first_recurring is True
    for update in built:  # what the HTTP server sends round-trips into the same update
        assert Update.model_validate(update_to_json(update)) == update


@pytest.mark.django_db(transaction=True)
async def test_end_to_end_over_loopback_http_with_real_polling(updates: UpdateFactory,
                                                               catalog: dict[str, Any]) -> None:
    from aiogram import Dispatcher

    from bot_kit.setup import setup_billing

    runs: list[int] = []
    router = Router()

    @router.message(Command("predict"))
    @requires_quota("PREDICTIONS")
    async def predict(message: Message, billing_user_id: int) -> None:
        runs.append(billing_user_id)
        await message.answer("sunny")

    dp = Dispatcher()
    setup_billing(dp, BillingConfig(offers=("PACK_10",), trial_offer="TRIAL_3"))
    dp.include_router(router)
    tg = updates.user()

    async with FakeBotAPIServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
        bot = Bot("42:TEST", session=AiohttpSession(api=TelegramAPIServer.from_base(server.url)))
        polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False))
        try:
            server.put_update(updates.command("predict", user=tg))
            paywall = await server.wait_for_call("sendMessage", timeout=10)
            server.put_update(updates.command("trial", user=tg))
            await server.wait_for_call("sendMessage", timeout=10, count=2)
            server.put_update(updates.command("predict", user=tg))
            done = await server.wait_for_call("sendMessage", timeout=10, count=3)
        finally:
            await dp.stop_polling()
            await asyncio.wait_for(polling, 10)

    assert "callback_data" in str(paywall.params["reply_markup"])
    assert done.params == {"chat_id": tg.id, "text": "sunny"}
    user_id = await ExternalIdentity.objects.filter(external_id=str(tg.id)).values_list(
        "user_id", flat=True).aget()
    assert runs == [user_id]
    assert await TransactionService.aget_balance(user_id, "PREDICTIONS") == 2
    assert "getUpdates" not in [c.method for c in server.calls]


def test_make_bot_uses_the_token_id() -> None:
    bot = make_bot(token="123:ABC")
    assert bot.id == 123
    assert isinstance(bot.session, FakeSession)
