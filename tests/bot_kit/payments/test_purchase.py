"""Stories 1–3: /buy → invoice → pre-checkout → successful_payment, through a real Dispatcher."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from asgiref.sync import sync_to_async

from bot_kit.config import BillingConfig
from bot_kit.models import TelegramPayment
from bot_kit.payments.payload import verify_payload
from bot_kit.testing import FakeSession, UpdateFactory
from bot_kit.texts import get_text
from tests.bot_kit.payments.conftest import SECRETS
from tests.bot_kit.payments.flows import (
    balance,
    billing_user_id,
    invoice_amount,
    pay,
    pre_checkout,
    receipts,
    request_invoice,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_buy_shows_catalog_of_purchasable_offers(dp: Dispatcher, bot: Bot,
                                                       session: FakeSession,
                                                       updates: UpdateFactory,
                                                       catalog: dict) -> None:
    await dp.feed_update(bot, updates.command("buy"))
    [call] = session.calls_to("sendMessage")
    buttons = [row[0] for row in call.params["reply_markup"]["inline_keyboard"]]
    assert [b["callback_data"] for b in buttons] == ["bk_buy:STARS_10"]  # no fiat: no token
    assert "50 ⭐" in buttons[0]["text"]


async def test_buy_sends_one_well_formed_stars_invoice(dp: Dispatcher, bot: Bot,
                                                       session: FakeSession,
                                                       updates: UpdateFactory,
                                                       catalog: dict) -> None:
    from billable.models import Order

    alice = updates.user()
    invoice = await request_invoice(dp, bot, session, updates, alice)
    assert len(session.calls_to("sendInvoice")) == 1
    assert invoice["currency"] == "XTR" and invoice.get("provider_token", "") == ""
    assert invoice["prices"] == [{"label": "10 credits", "amount": 50}]
    assert 1 <= len(invoice["title"]) <= 32 and 1 <= len(invoice["description"]) <= 255
    assert len(invoice["payload"].encode()) <= 128
    payload = verify_payload(invoice["payload"], SECRETS)
    order = await Order.objects.aget(pk=payload.order_id)
    assert order.status == "pending" and order.user_id == await billing_user_id(alice)
    assert (payload.buyer_id, payload.amount, payload.currency) == (alice.id, 50, "XTR")


async def test_buy_command_with_sku_and_long_names_are_truncated(
        dp: Dispatcher, bot: Bot, session: FakeSession, updates: UpdateFactory,
        make_offer: Any, catalog: dict) -> None:
    await sync_to_async(make_offer)("LONG", items=[(catalog["credits"], 1)], price="3",
                                    currency="XTR", name="Ж" * 80, description="🚀" * 300)
    config = BillingConfig(offers=("LONG",), signing_secrets=SECRETS)
    from aiogram import Dispatcher as D

    from bot_kit.setup import setup_billing

    dp2 = D()
    setup_billing(dp2, config)
    await dp2.feed_update(bot, updates.command("buy", "long"))
    [call] = session.calls_to("sendInvoice")
    assert len(call.params["title"]) <= 32 and call.params["title"].endswith("…")
    assert len(call.params["description"].encode("utf-16-le")) // 2 <= 255


async def test_fiat_offer_uses_provider_token_and_cents(make_dp: Any, bot: Bot,
                                                        session: FakeSession,
                                                        updates: UpdateFactory,
                                                        catalog: dict) -> None:
    dp = make_dp(BillingConfig(offers=("USD_PACK",), signing_secrets=SECRETS,
                               provider_token="PROVIDER:TEST"))
    user = updates.user()
    invoice = await request_invoice(dp, bot, session, updates, user, sku="USD_PACK")
    assert invoice["provider_token"] == "PROVIDER:TEST"
    assert (invoice["currency"], invoice_amount(invoice)) == ("USD", 499)
    answer = await pre_checkout(dp, bot, session, updates, user, invoice["payload"], 499, "USD")
    assert answer["ok"] is True


async def test_precheckout_approves_the_valid_order(dp: Dispatcher, bot: Bot,
                                                    session: FakeSession, updates: UpdateFactory,
                                                    catalog: dict) -> None:
    alice = updates.user()
    invoice = await request_invoice(dp, bot, session, updates, alice)
    answer = await pre_checkout(dp, bot, session, updates, alice, invoice["payload"], 50)
    assert answer["ok"] is True and "error_message" not in answer


REASONS = {"cancelled": "not_payable", "paid": "already_paid", "tampered": "invalid",
           "wrong_amount": "amount_mismatch", "other_user": "wrong_buyer",
           "wrong_currency": "amount_mismatch"}


@pytest.mark.parametrize("case", sorted(REASONS))
@pytest.mark.parametrize("lang", ["en", "ru"])
async def test_precheckout_declines_in_buyer_language(dp: Dispatcher, bot: Bot,
                                                      session: FakeSession,
                                                      updates: UpdateFactory, catalog: dict,
                                                      case: str, lang: str) -> None:
    from billable.services import OrderService

    alice = updates.user(language_code=lang)
    invoice = await request_invoice(dp, bot, session, updates, alice)
    payload, amount, payer, currency = invoice["payload"], 50, alice, "XTR"
    order_id = verify_payload(payload, SECRETS).order_id
    if case == "cancelled":
        await OrderService.acancel_order(order_id)
    elif case == "paid":
        await OrderService.aprocess_payment(order_id, payment_id="elsewhere",
                                            payment_method="manual")
    elif case == "tampered":
        parts = payload.split(".")
        parts[4], amount = "1", 1
        payload = ".".join(parts)
    elif case == "wrong_amount":
        amount = 49
    elif case == "wrong_currency":
        currency = "USD"
    else:
        payer = updates.user(language_code=lang)
        await dp.feed_update(bot, updates.command("start", user=payer))
    answer = await pre_checkout(dp, bot, session, updates, payer, payload, amount, currency)
    assert answer["ok"] is False
    assert answer["error_message"] == get_text(f"precheckout_{REASONS[case]}", lang)
    assert answer["error_message"] != get_text(f"precheckout_{REASONS[case]}",
                                               "ru" if lang == "en" else "en")


@pytest.mark.parametrize("behaviour", ["hang", "raise", "veto"])
async def test_precheckout_validator_fails_closed_before_deadline(
        make_dp: Any, bot: Bot, session: FakeSession, updates: UpdateFactory, catalog: dict,
        behaviour: str) -> None:
    async def validator(query: Any, order: Any) -> str | None:
        if behaviour == "hang":
            await asyncio.sleep(30)
        if behaviour == "raise":
            raise RuntimeError("host is down")
        return "Sold out today"

    dp = make_dp(BillingConfig(offers=("STARS_10",), signing_secrets=SECRETS,
                               precheckout_validator=validator, precheckout_timeout=0.3))
    alice = updates.user()
    invoice = await request_invoice(dp, bot, session, updates, alice)
    started = time.monotonic()
    answer = await pre_checkout(dp, bot, session, updates, alice, invoice["payload"], 50)
    assert time.monotonic() - started < 5
    assert answer["ok"] is False and answer["error_message"]
    if behaviour == "veto":
        assert answer["error_message"] == "Sold out today"


async def test_successful_payment_twice_grants_once_with_one_receipt(
        dp: Dispatcher, bot: Bot, session: FakeSession, updates: UpdateFactory,
        catalog: dict) -> None:
    from billable.models import Order

    alice = updates.user()
    invoice = await request_invoice(dp, bot, session, updates, alice)
    await pay(dp, bot, updates, alice, invoice, "charge-1")
    await pay(dp, bot, updates, alice, invoice, "charge-1")
    assert await balance(alice) == 10
    assert await TelegramPayment.objects.filter(charge_id="charge-1").acount() == 1
    assert len(receipts(session)) == 1
    order = await Order.objects.aget(pk=verify_payload(invoice["payload"], SECRETS).order_id)
    assert (order.status, order.payment_id, order.payment_method) == (
        "paid", "charge-1", "telegram_stars")
    assert not session.calls_to("refundStarPayment")


async def test_invoice_signed_before_a_key_rotation_still_pays(
        make_dp: Any, bot: Bot, session: FakeSession, updates: UpdateFactory,
        catalog: dict) -> None:
    old_only = BillingConfig(offers=("STARS_10",), signing_secrets=(SECRETS[1],))
    rotated = BillingConfig(offers=("STARS_10",), signing_secrets=SECRETS)
    retired = BillingConfig(offers=("STARS_10",), signing_secrets=(SECRETS[0],))
    alice = updates.user()
    invoice = await request_invoice(make_dp(old_only), bot, session, updates, alice)
    assert (await pre_checkout(make_dp(rotated), bot, session, updates, alice,
                               invoice["payload"], 50))["ok"] is True
    assert (await pre_checkout(make_dp(retired), bot, session, updates, alice,
                               invoice["payload"], 50))["ok"] is False


@pytest.mark.parametrize("command, args, expected", [
    ("buy", "NO_SUCH", "This offer cannot be bought here."),
    ("buy", "usd_pack", "This offer cannot be bought here."),  # fiat without a provider token
    ("subscribe", "STARS_10", "This offer cannot be bought here."),  # not a subscription
])
async def test_unpurchasable_requests_get_a_localized_error(
        dp: Dispatcher, bot: Bot, session: FakeSession, updates: UpdateFactory, catalog: dict,
        command: str, args: str, expected: str) -> None:
    from billable.models import Order

    await dp.feed_update(bot, updates.command(command, args))
    assert session.calls_to("sendMessage")[-1].params["text"] == expected
    assert not session.calls_to("sendInvoice") and not session.calls_to("createInvoiceLink")
    assert await Order.objects.acount() == 0


async def test_empty_catalogs_say_so(make_dp: Any, bot: Bot, session: FakeSession,
                                     updates: UpdateFactory) -> None:
    dp = make_dp(BillingConfig(signing_secrets=SECRETS))
    await dp.feed_update(bot, updates.command("buy"))
    await dp.feed_update(bot, updates.command("subscribe"))
    assert [c.params["text"] for c in session.calls_to("sendMessage")] == [
        "Nothing is on sale right now.", "There are no subscriptions right now."]
