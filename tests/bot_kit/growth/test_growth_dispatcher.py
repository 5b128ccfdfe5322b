"""Promo, gift and notification handlers through a real Dispatcher and the fake Bot API:
refusals in the user's language, pre-checkout re-checks, refunds of unclaimed gifts."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.utils import timezone

from bot_kit.config import BillingConfig
from bot_kit.handlers.promo import PromoOffer
from bot_kit.payments.payload import InvoicePayload, sign_payload, verify_payload
from bot_kit.testing import FakeSession, UpdateFactory, make_bot
from tests.bot_kit.growth.conftest import SECRETS
from tests.bot_kit.payments.flows import balance, pay, pre_checkout, texts_sent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dp(make_dp: Any, config: BillingConfig) -> Dispatcher:
    return make_dp(config)


@sync_to_async
def make_code(code: str, **fields: Any) -> Any:
    from billable.models import PromoCode

    return PromoCode.objects.create(code=code, **fields)


async def test_promo_usage_grant_and_localized_refusals(dp: Dispatcher, bot: Bot,
                                                        session: FakeSession,
                                                        updates: UpdateFactory,
                                                        catalog: dict) -> None:
    await make_code("GIFT10", offer=catalog["pack"])
    ivan = updates.user(language_code="ru")
    for args in (None, "gift10", "gift10", "nope"):
        await dp.feed_update(bot, updates.command("promo", args, user=ivan))
    assert texts_sent(session) == [
        "Отправьте /promo КОД, чтобы применить промокод.",
        "Промокод GIFT10 применён: Credits × 10.",
        "Вы уже использовали этот промокод.",
        "Такого промокода нет."]
    assert await balance(ivan) == 10


async def test_unbound_discount_code_lets_the_user_pick_an_offer(dp: Dispatcher, bot: Bot,
                                                                 session: FakeSession,
                                                                 updates: UpdateFactory,
                                                                 catalog: dict) -> None:
    await make_code("HALF", kind="percent", percent_off=50)
    alice = updates.user()
    await dp.feed_update(bot, updates.command("start", "promo-HALF", user=alice))
    keyboard = session.calls_to("sendMessage")[-1].params["reply_markup"]["inline_keyboard"]
    assert [row[0]["callback_data"] for row in keyboard] == [
        PromoOffer(code="HALF", sku="STARS_10").pack(),
        PromoOffer(code="HALF", sku="STARS_50").pack()]
    await dp.feed_update(bot, updates.callback(keyboard[1][0]["callback_data"], user=alice))
    invoice = session.calls_to("sendInvoice")[-1].params
    assert invoice["prices"][0]["amount"] == 100
    assert (await pre_checkout(dp, bot, session, updates, alice, invoice["payload"], 100))["ok"]
    await pay(dp, bot, updates, alice, invoice, "half-1")
    assert await balance(alice) == 50


async def test_pre_checkout_refuses_a_released_promo_reservation(dp: Dispatcher, bot: Bot,
                                                                session: FakeSession,
                                                                updates: UpdateFactory,
                                                                catalog: dict) -> None:
    from billable.growth.promo import PromoService

    await make_code("LATE", kind="fixed", amount_off="10", offer=catalog["pack"])
    alice = updates.user()
    await dp.feed_update(bot, updates.command("promo", "late", user=alice))
    invoice = session.calls_to("sendInvoice")[-1].params
    assert invoice["prices"][0]["amount"] == 40
    assert await sync_to_async(PromoService.release_stale)(older_than=0) == 1
    answer = await pre_checkout(dp, bot, session, updates, alice, invoice["payload"], 40)
    assert answer["ok"] is False
    # The order was cancelled with the reservation; the plain order check answers first.
    assert answer["error_message"] == "This order was cancelled. Please use /buy again."


async def test_pre_checkout_refuses_a_discount_that_does_not_match(dp: Dispatcher, bot: Bot,
                                                                  session: FakeSession,
                                                                  updates: UpdateFactory,
                                                                  catalog: dict) -> None:
    from billable.models import PromoCode

    await make_code("TENOFF", kind="fixed", amount_off="10", offer=catalog["pack"])
    alice = updates.user()
    await dp.feed_update(bot, updates.command("promo", "tenoff", user=alice))
    signed = verify_payload(session.calls_to("sendInvoice")[-1].params["payload"], SECRETS)
    forged = sign_payload(InvoicePayload(signed.order_id, 40, "XTR", alice.id, kind="d",
                                         promo_id=signed.promo_id, discount=25), SECRETS)
    answer = await pre_checkout(dp, bot, session, updates, alice, forged, 40)
    assert answer == {**answer, "ok": False,
                      "error_message": "This discounted invoice is no longer valid."}
    await PromoCode.objects.filter(code="TENOFF").aupdate(is_active=False)
    original = session.calls_to("sendInvoice")[-1].params["payload"]
    answer = await pre_checkout(dp, bot, session, updates, alice, original, 40)
    assert answer["error_message"].startswith("The promo code is no longer valid")


async def test_gift_menu_and_unknown_links(dp: Dispatcher, bot: Bot, session: FakeSession,
                                           updates: UpdateFactory, catalog: dict) -> None:
    alice = updates.user()
    await dp.feed_update(bot, updates.command("gift", user=alice))
    keyboard = session.calls_to("sendMessage")[-1].params["reply_markup"]["inline_keyboard"]
    assert len(keyboard) == 1  # only the configured gift offers
    await dp.feed_update(bot, updates.callback(keyboard[0][0]["callback_data"], user=alice))
    assert session.calls_to("sendInvoice")[-1].params["prices"][0]["amount"] == 50
    await dp.feed_update(bot, updates.command("gift", "STARS_50", user=alice))
    await dp.feed_update(bot, updates.command("start", "gift-nope", user=alice))
    assert texts_sent(session)[-2:] == ["This offer cannot be bought here.",
                                        "This gift link is not valid."]


async def test_unclaimed_gift_is_refunded_through_the_outbox(dp: Dispatcher, bot: Bot,
                                                             session: FakeSession,
                                                             updates: UpdateFactory,
                                                             catalog: dict) -> None:
    from billable.models import Gift, Order
    from bot_kit.payments.refunds import RefundOutbox

    buyer = updates.user()
    await dp.feed_update(bot, updates.command("gift", "STARS_10", user=buyer))
    invoice = session.calls_to("sendInvoice")[-1].params
    await pay(dp, bot, updates, buyer, invoice, "gift-late")
    await Gift.objects.aupdate(expires_at=timezone.now() - timedelta(minutes=1))
    out = StringIO()
    await sync_to_async(call_command)("billable_gift_refunds", stdout=out)
    assert out.getvalue().strip() == "Expired gifts: 1. Refunds queued: 1."
    await sync_to_async(call_command)("billable_gift_refunds", stdout=StringIO())
    states = await RefundOutbox(bot).process_due()
    assert list(states.values()) == ["done"]
    [call] = session.calls_to("refundStarPayment")
    assert call.params["telegram_payment_charge_id"] == "gift-late"
    gift = await Gift.objects.aget()
    assert gift.status == "refunded"
    assert (await Order.objects.aget(pk=gift.order_id)).status == "refunded"


def test_notify_command_scans_and_sends(monkeypatch: pytest.MonkeyPatch, catalog: dict,
                                        config: BillingConfig, make_user: Any) -> None:
    from billable.models import ExternalIdentity, ProductAlert
    from billable.services import TransactionService

    session = FakeSession()
    monkeypatch.setattr("bot_kit.management.commands._bot.command_bot",
                        lambda: make_bot(session))
    monkeypatch.setattr("bot_kit.management.commands._bot.command_config",
                        lambda dispatcher=None: config)
    user = make_user()
    ExternalIdentity.objects.create(provider="telegram", external_id="4242", user=user,
                                    metadata={"language_code": "ru"})
    ProductAlert.objects.create(product=catalog["credits"], low_balance_units=5)
    TransactionService.grant_offer(user.pk, "STARS_10")
    TransactionService.consume_quota(user.pk, "CREDITS", amount=6)
    out = StringIO()
    call_command("billable_notify", stdout=out)
    assert out.getvalue().strip() == "Low balance: 1. Expiring: 0. Sent: 1. Failed: 0."
    [call] = session.calls_to("sendMessage")
    assert (call.params["chat_id"], call.params["text"]) == (4242, "У вас осталось Credits: 4.")
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["text"].startswith("Пополнить")
    call_command("billable_notify", stdout=StringIO())
    assert len(session.calls_to("sendMessage")) == 1


async def test_promo_and_gift_orders_carry_the_bots_id(make_dp: Any, config: BillingConfig,
                                                      bot: Bot, session: FakeSession,
                                                      updates: UpdateFactory,
                                                      catalog: dict) -> None:
    """The dashboard splits money by ``metadata["bot_id"]``: a discounted order, a gift's
    order and the gift's grant say which bot sold them, like an ordinary purchase."""
    from dataclasses import replace

    from billable.models import Order, Transaction

    dp = make_dp(replace(config, bot_id=bot.id))
    await make_code("HALF10", kind="percent", percent_off=50, offer=catalog["pack"])
    alice, bob = updates.user(), updates.user()
    await dp.feed_update(bot, updates.command("promo", "HALF10", user=alice))
    assert session.calls_to("sendInvoice")[-1].params["prices"][0]["amount"] == 25
    await dp.feed_update(bot, updates.command("gift", "STARS_10", user=alice))
    gift_invoice = session.calls_to("sendInvoice")[-1].params
    await pay(dp, bot, updates, alice, gift_invoice, "gift-charge-1")

    @sync_to_async
    def stamped() -> tuple[list[Any], Any]:
        orders = [(str(o.total_amount), o.metadata.get("gift"), o.metadata.get("bot_id"))
                  for o in Order.objects.order_by("id")]
        from billable.growth.gifts import GiftService

        gift_order = Order.objects.get(metadata__gift=True)
        return orders, GiftService.token_for_order(gift_order.pk)

    orders, token = await stamped()
    assert orders == [("25.00", None, str(bot.id)), ("50.00", True, str(bot.id))]
    await dp.feed_update(bot, updates.command("start", f"gift-{token}", user=bob))

    @sync_to_async
    def claimed() -> list[Any]:
        return [t.metadata.get("bot_id") for t in Transaction.objects.filter(
            direction=Transaction.Direction.CREDIT, metadata__gift_id__isnull=False)]

    assert await claimed() == [str(bot.id)]
