"""The purchase story once more end to end: loopback Bot API over HTTP with real polling."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from bot_kit.callbacks import BuyOffer
from bot_kit.config import BillingConfig
from bot_kit.testing import FakeBotAPIServer, UpdateFactory
from tests.bot_kit.payments.conftest import ADMIN_ID
from tests.bot_kit.payments.flows import balance

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


async def test_purchase_and_refund_over_loopback_polling(make_dp: Any, config: BillingConfig,
                                                         updates: UpdateFactory,
                                                         catalog: dict) -> None:
    dp = make_dp(config)
    alice, admin = updates.user(language_code="ru"), updates.user(ADMIN_ID)
    async with FakeBotAPIServer() as server:
        bot = Bot("42:TEST", session=AiohttpSession(api=TelegramAPIServer.from_base(server.url)))
        polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False))
        try:
            server.put_update(updates.callback(BuyOffer(sku="STARS_10").pack(), user=alice))
            invoice = (await server.wait_for_call("sendInvoice", timeout=10)).params
            assert invoice["currency"] == "XTR"
            server.put_update(updates.pre_checkout(payload=invoice["payload"], total_amount=50,
                                                   user=alice))
            answer = (await server.wait_for_call("answerPreCheckoutQuery", timeout=10)).params
            assert answer["ok"] is True
            server.put_update(updates.successful_payment(payload=invoice["payload"],
                                                         total_amount=50, charge_id="e2e-1",
                                                         user=alice))
            receipt = await server.wait_for_call("sendMessage", timeout=10)
            assert receipt.params["text"].startswith("Оплата получена")
            assert await balance(alice) == 10
            server.put_update(updates.command("refund", "e2e-1", user=admin))
            refund = await server.wait_for_call("refundStarPayment", timeout=10)
            assert refund.params["telegram_payment_charge_id"] == "e2e-1"
            await server.wait_for_call("sendMessage", timeout=10, count=2)
            assert await balance(alice) == 0
        finally:
            await dp.stop_polling()
            await asyncio.wait_for(polling, timeout=10)
            await bot.session.close()


async def test_refund_worker_runs_with_polling(make_dp: Any, config: BillingConfig,
                                               catalog: dict) -> None:
    from bot_kit.models import RefundRequest, TelegramPayment
    from bot_kit.payments.refunds import arequest_refund, attach_refund_worker

    await TelegramPayment.objects.acreate(charge_id="w1", telegram_user_id=7, currency="XTR",
                                          total_amount=5, status="rejected")
    refund = await arequest_refund("w1")
    dp = make_dp(config)
    attach_refund_worker(dp, interval=0.05)
    async with FakeBotAPIServer() as server:
        bot = Bot("42:TEST", session=AiohttpSession(api=TelegramAPIServer.from_base(server.url)))
        polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False))
        try:
            call = await server.wait_for_call("refundStarPayment", timeout=10)
            assert call.params["telegram_payment_charge_id"] == "w1"
        finally:
            await dp.stop_polling()
            await asyncio.wait_for(polling, timeout=10)
            await bot.session.close()
    assert (await RefundRequest.objects.aget(pk=refund.pk)).state == "done"
