"""Peer acceptance suite, part 3: the testing kit (``bot_kit.testing``), ``TELEGRAM_API_SERVER``
and an end-to-end run with real polling over loopback HTTP."""

from __future__ import annotations

import asyncio

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter, TelegramServerError
from aiogram.types import Update

from bot_kit import BillingConfig, setup_billing
from bot_kit.callbacks import BuyOffer
from bot_kit.runner import build_bot
from bot_kit.testing import (
    FakeBotAPIServer,
    FakeSession,
    UpdateFactory,
    make_bot,
    update_to_json,
)
from tests.bot_kit.peer import CYRILLIC, SECRET, remaining

CONFIG = BillingConfig(offers=("PACK_10",), signing_secrets=(SECRET,))


async def test_fake_session_records_calls_and_answers_like_telegram() -> None:
    session = FakeSession()
    bot = make_bot(session)
    me = await bot.get_me()
    sent = await bot.send_message(5, "hello")
    link = await bot.create_invoice_link(title="t", description="d", payload="p",
                                         currency="XTR", prices=[{"label": "x", "amount": 1}])
    assert me.id == bot.id == 42
    assert sent.text == "hello" and sent.chat.id == 5 and sent.message_id > 0
    assert link.startswith("https://t.me/")
    assert [c.method for c in session.calls] == ["getMe", "sendMessage", "createInvoiceLink"]
    assert session.calls_to("sendMessage")[0].params["text"] == "hello"
    assert await bot.answer_pre_checkout_query("q", ok=True) is True
    assert await bot.refund_star_payment(1, "c") is True


async def test_fake_session_injects_real_aiogram_errors() -> None:
    session = FakeSession()
    bot = make_bot(session)
    session.fail("refundStarPayment", status=429, retry_after=7)
    session.fail("refundStarPayment", status=500)
    session.fail("refundStarPayment", status=400,
                 description="Bad Request: CHARGE_ALREADY_REFUNDED", times=2)
    with pytest.raises(TelegramRetryAfter) as retry:
        await bot.refund_star_payment(1, "c")
    assert retry.value.retry_after == 7
    with pytest.raises(TelegramServerError):
        await bot.refund_star_payment(1, "c")
    for _ in range(2):
        with pytest.raises(TelegramBadRequest, match="CHARGE_ALREADY_REFUNDED"):
            await bot.refund_star_payment(1, "c")
    assert await bot.refund_star_payment(1, "c") is True

    session.fail(status=403, description="Forbidden: bot was blocked by the user")
    with pytest.raises(Exception, match="blocked"):
        await bot.send_message(1, "x")
    assert (await bot.send_message(1, "y")).text == "y"


def test_update_factory_builds_realistic_updates() -> None:
    updates = UpdateFactory()
    ivan = updates.user(language_code="ru")
    first, second = updates.command("buy", "PACK_10", user=ivan), updates.message("hi")
    assert second.update_id == first.update_id + 1
    assert first.message.text == "/buy PACK_10"
    assert first.message.entities[0].type == "bot_command"
    assert CYRILLIC.search(ivan.first_name)
    again = updates.command("buy", update_id=first.update_id)
    assert again.update_id == first.update_id
    payment = updates.successful_payment(payload="p", total_amount=5, is_recurring=True,
                                         is_first_recurring=True,
                                         subscription_expiration_date=1_900_000_000)
    assert payment.message.successful_payment.is_first_recurring is True
    assert updates.refunded_payment(payload="p", total_amount=5, charge_id="c"
                                    ).message.refunded_payment.telegram_payment_charge_id == "c"
    assert updates.subscription(state="canceled", payload="p").subscription.state == "canceled"
    assert updates.pre_checkout(payload="p", total_amount=5).pre_checkout_query.currency == "XTR"
    assert updates.callback("x").callback_query.data == "x"
    assert updates.inline_query("q").inline_query.query == "q"


def test_update_to_json_is_what_telegram_sends() -> None:
    updates = UpdateFactory()
    for update in (updates.command("balance"), updates.callback("bk_buy:X"),
                   updates.pre_checkout(payload="p", total_amount=1),
                   updates.successful_payment(payload="p", total_amount=1)):
        data = update_to_json(update)
        assert "from_user" not in str(data) and "None" not in str(data)
        assert Update.model_validate(data).update_id == update.update_id


def test_build_bot_reads_token_and_api_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:ABC")
    monkeypatch.setenv("TELEGRAM_API_SERVER", "http://127.0.0.1:8081")
    bot = build_bot()
    assert bot.id == 123
    assert bot.session.api.api_url("123:ABC", "getMe") == "http://127.0.0.1:8081/bot123:ABC/getMe"
    monkeypatch.delenv("TELEGRAM_API_SERVER")
    assert build_bot().session.api.api_url("t", "getMe").startswith("https://api.telegram.org/")
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")
    with pytest.raises(Exception, match="TELEGRAM_BOT_TOKEN"):
        build_bot()


@pytest.mark.django_db(transaction=True)
async def test_end_to_end_purchase_with_real_polling(catalog,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    dp = Dispatcher()
    setup_billing(dp, CONFIG)
    updates = UpdateFactory()
    async with FakeBotAPIServer() as server:
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "42:TEST")
        monkeypatch.setenv("TELEGRAM_API_SERVER", server.url)
        bot = build_bot()
        polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False))
        try:
            server.put_update(updates.command("balance"))
            await server.wait_for_call("sendMessage", timeout=10)
            server.put_update(updates.callback(BuyOffer(sku="PACK_10").pack()))
            invoice = await server.wait_for_call("sendInvoice", timeout=10)
            payload = invoice.params["payload"]
            server.put_update(updates.pre_checkout(payload=payload, total_amount=50))
            answer = await server.wait_for_call("answerPreCheckoutQuery", timeout=10)
            assert answer.params["ok"] in (True, "true", "True")
            paid = updates.successful_payment(payload=payload, total_amount=50, charge_id="e2e")
            server.put_update(paid)
            server.put_update(paid)  # redelivered
            await server.wait_delivered(5)
            for _ in range(100):
                if server.confirmed_offset > paid.update_id:
                    break
                await asyncio.sleep(0.05)
            assert server.confirmed_offset > paid.update_id
        finally:
            await dp.stop_polling()
            await polling
            await bot.session.close()
    assert await remaining(updates.default_user.id, "PREDICTIONS") == 10
    receipts = [c for c in server.calls if c.method == "sendMessage"
                and "e2e" in str(c.params.get("text"))]
    assert len(receipts) == 1


async def test_fake_server_serves_plain_aiogram_bots() -> None:
    async with FakeBotAPIServer() as server:
        bot = Bot("42:TEST", session=AiohttpSession(api=TelegramAPIServer.from_base(server.url)))
        try:
            server.api.fail("sendMessage", status=429, retry_after=1)
            with pytest.raises(TelegramRetryAfter):
                await bot.send_message(1, "x")
            assert (await bot.send_message(1, "y")).text == "y"
        finally:
            await bot.session.close()
        assert [c.method for c in server.calls] == ["sendMessage", "sendMessage"]
