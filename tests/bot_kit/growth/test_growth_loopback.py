"""Black-box stories over the loopback Bot API with real polling: a deep-link promo paid at the
discounted price, a gift bought and claimed, and low-balance / expiry alerts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from bot_kit.alerts import AlertSender
from bot_kit.config import BillingConfig
from bot_kit.payments.payload import KIND_DISCOUNT, KIND_GIFT, verify_payload
from bot_kit.testing import UpdateFactory
from tests.bot_kit.growth.conftest import SECRETS
from tests.bot_kit.payments.flows import balance, billing_user_id

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@sync_to_async
def make_code(code: str, **fields: Any) -> Any:
    from billable.models import PromoCode

    return PromoCode.objects.create(code=code, **fields)


@sync_to_async
def ledger_problems() -> list[str]:
    from billable.ledger.audit import check_ledger

    return check_ledger()


async def test_deep_link_promo_discounted_invoice_paid(loopback: Any, updates: UpdateFactory,
                                                       catalog: dict) -> None:
    from billable.models import Order, PromoCode, PromoRedemption, Transaction

    await make_code("SPRING20", kind="percent", percent_off=20, offer=catalog["pack"],
                    max_uses=100)
    alice = updates.user(language_code="en")
    async with loopback() as lb:
        lb.server.put_update(updates.command("start", "promo-spring20", user=alice))
        invoice = (await lb.server.wait_for_call("sendInvoice", timeout=10)).params
        [price] = invoice["prices"]
        assert (invoice["currency"], price["amount"]) == ("XTR", 40)
        assert "SPRING20" in invoice["description"]
        signed = verify_payload(invoice["payload"], SECRETS)
        assert (signed.kind, signed.amount, signed.discount) == (KIND_DISCOUNT, 40, 10)
        lb.server.put_update(updates.pre_checkout(payload=invoice["payload"], total_amount=40,
                                                  user=alice))
        answer = (await lb.server.wait_for_call("answerPreCheckoutQuery", timeout=10)).params
        assert answer["ok"] is True
        paid = updates.successful_payment(payload=invoice["payload"], total_amount=40,
                                          charge_id="promo-charge-1", user=alice)
        lb.server.put_update(paid)
        await lb.server.wait_for_call("sendMessage", timeout=10)
        lb.server.put_update(paid)  # redelivered: nothing happens twice
        lb.server.put_update(updates.command("promo", "SPRING20", user=alice))
        await lb.server.wait_for_call("sendMessage", timeout=10, count=2)
        texts = lb.texts()
    assert texts[0].startswith("Payment received") and "40 ⭐" in texts[0]
    assert texts[1] == "You have already used this promo code."
    assert await balance(alice) == 10  # the full offer, granted once
    order = await Order.objects.aget(pk=signed.order_id)
    assert (order.status, order.total_amount) == ("paid", 40)
    assert await Transaction.objects.filter(action_type="purchase").acount() == 1
    assert (await PromoRedemption.objects.aget()).status == "redeemed"
    assert (await PromoCode.objects.aget()).uses_count == 1
    assert await ledger_problems() == []


async def test_gift_bought_claimed_second_claim_refused_buyer_told(
        loopback: Any, updates: UpdateFactory, catalog: dict) -> None:
    buyer = updates.user(language_code="en")
    friend, stranger = updates.user(language_code="ru"), updates.user(language_code="en")
    async with loopback() as lb:
        lb.server.put_update(updates.command("gift", "stars_10", user=buyer))
        invoice = (await lb.server.wait_for_call("sendInvoice", timeout=10)).params
        assert verify_payload(invoice["payload"], SECRETS).kind == KIND_GIFT
        lb.server.put_update(updates.pre_checkout(payload=invoice["payload"], total_amount=50,
                                                  user=buyer))
        assert (await lb.server.wait_for_call("answerPreCheckoutQuery",
                                              timeout=10)).params["ok"] is True
        lb.server.put_update(updates.successful_payment(
            payload=invoice["payload"], total_amount=50, charge_id="gift-charge", user=buyer))
        ready = (await lb.server.wait_for_call("sendMessage", timeout=10)).params["text"]
        assert "https://t.me/test_bot?start=gift-" in ready
        assert await balance(buyer) == 0
        token = ready.split("start=gift-")[1].split()[0]
        lb.server.put_update(updates.command("start", f"gift-{token}", user=buyer))
        await lb.server.wait_for_call("sendMessage", timeout=10, count=2)
        lb.server.put_update(updates.command("start", f"gift-{token}", user=friend))
        await lb.server.wait_for_call("sendMessage", timeout=10, count=4)
        lb.server.put_update(updates.command("start", f"gift-{token}", user=stranger))
        await lb.server.wait_for_call("sendMessage", timeout=10, count=5)
        own = lb.messages_to(buyer.id)[1]["text"]
        to_friend = lb.messages_to(friend.id)
        notice = lb.messages_to(buyer.id)[2]["text"]
        refused = lb.messages_to(stranger.id)[0]["text"]
    assert own == "This is your own gift: send the link to someone else."
    assert to_friend[0]["text"] == "Вам подарили: Credits × 10. Приятного пользования!"
    assert notice == "Your gift “10 credits” has been claimed. Thank you!"
    assert refused == "This gift has already been claimed."
    assert (await balance(friend), await balance(stranger), await balance(buyer)) == (10, 0, 0)
    assert await ledger_problems() == []


@sync_to_async
def spend(tg_user: Any, amount: int) -> None:
    from billable.models import ExternalIdentity
    from billable.services import TransactionService

    user = ExternalIdentity.get_user_by_identity(str(tg_user.id), provider="telegram")
    assert TransactionService.consume_quota(user.pk, "CREDITS", amount=amount)["success"]


@sync_to_async
def give(tg_user: Any, sku: str) -> None:
    from billable.models import ExternalIdentity
    from billable.services import TransactionService

    user = ExternalIdentity.get_user_by_identity(str(tg_user.id), provider="telegram")
    TransactionService.grant_offer(user.pk, sku)


async def test_low_balance_alert_once_per_crossing_and_expiry_once_per_batch(
        loopback: Any, updates: UpdateFactory, catalog: dict, config: BillingConfig,
        make_product: Any, make_offer: Any) -> None:
    from billable.models import ProductAlert

    await ProductAlert.objects.acreate(product=catalog["credits"], low_balance_percent=30,
                                       buy_offer=catalog["pack"])
    alice = updates.user(language_code="en")
    async with loopback() as lb:
        lb.server.put_update(updates.command("notifications", user=alice))
        assert (await lb.server.wait_for_call("sendMessage", timeout=10)).params[
            "text"].startswith("Balance and expiry reminders are on")
        sender = AlertSender(lb.bot, config)
        await give(alice, "STARS_10")                        # 10; threshold 3
        assert (await sender.scan_and_send())["sent"] == 0
        await spend(alice, 7)                                # 3: crossed
        assert (await sender.scan_and_send())["sent"] == 1
        alert = lb.messages_to(alice.id)[-1]
        assert alert["text"] == "You have 3 Credits left."
        button = alert["reply_markup"]["inline_keyboard"][0][0]
        assert button["text"] == "Top up: 10 credits — 50 ⭐"
        await spend(alice, 2)                                # still low: not again
        assert (await sender.scan_and_send())["sent"] == 0
        await give(alice, "STARS_10")                        # topped up to 11
        assert (await sender.scan_and_send())["sent"] == 0
        await spend(alice, 9)                                # 2: a new crossing
        assert (await sender.scan_and_send())["sent"] == 1
        assert (await sender.scan_and_send())["sent"] == 0
        low = [m["text"] for m in lb.messages_to(alice.id) if m["text"].startswith("You have")]
        assert low == ["You have 3 Credits left.", "You have 2 Credits left."]

        pro = await sync_to_async(make_product)("PRO", name="Pro", product_type="period")
        await sync_to_async(make_offer)("PRO_WEEK", items=[(pro, 1, "days", 7)], price="30",
                                        currency="XTR", name="Pro week")
        await ProductAlert.objects.acreate(product=pro, expiry_days=3)
        await give(alice, "PRO_WEEK")
        assert (await sender.scan_and_send())["sent"] == 0   # 7 days left
        later = timezone.now() + timedelta(days=5)
        from billable.growth.alerts import AlertService

        assert (await AlertService.ascan(now=later)).expiring == 1
        assert (await AlertService.ascan(now=later)).expiring == 0
        assert (await sender.send_due())["sent"] == 1
        assert lb.messages_to(alice.id)[-1]["text"].startswith("Your Pro expires on ")

        lb.server.put_update(updates.command("notifications", "off", user=alice))
        await lb.server.wait_for_call("sendMessage", timeout=10, count=5)
        assert lb.messages_to(alice.id)[-1]["text"].startswith(
            "Balance and expiry reminders are off")
        await give(alice, "STARS_10")
        await spend(alice, 10)
        result = await sender.scan_and_send()
        assert (result["low_balance"], result["sent"]) == (1, 0)  # recorded, not sent
    assert await billing_user_id(alice)
