"""Stories 3–4: exactly-once confirmation and automatic refunds of payments we cannot honour."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from asgiref.sync import sync_to_async

from bot_kit.models import RefundRequest, TelegramPayment
from bot_kit.payments.confirm import PaymentFacts, confirm_payment
from bot_kit.payments.payload import verify_payload
from bot_kit.testing import FakeSession, UpdateFactory
from tests.bot_kit.payments.conftest import SECRETS
from tests.bot_kit.payments.flows import balance, pay, receipts, request_invoice
from tests.helpers import requires_postgres, run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)


@requires_postgres
async def test_three_concurrent_deliveries_grant_once(dp: Dispatcher, bot: Bot,
                                                      session: FakeSession,
                                                      updates: UpdateFactory,
                                                      catalog: dict) -> None:
    alice = updates.user()
    invoice = await request_invoice(dp, bot, session, updates, alice)
    update = updates.successful_payment(payload=invoice["payload"], total_amount=50,
                                        charge_id="concurrent-1", user=alice)

    def deliver(_: int) -> Any:
        return asyncio.run(dp.feed_update(bot, update))

    results = await sync_to_async(run_in_threads, thread_sensitive=False)(3, deliver)
    assert not [r for r in results if isinstance(r, BaseException)]
    assert await balance(alice) == 10
    assert await TelegramPayment.objects.acount() == 1
    assert len(receipts(session)) == 1
    assert not session.calls_to("refundStarPayment")


@requires_postgres
def test_two_processes_confirm_the_same_charge_once(catalog: dict, make_user: Any) -> None:
    """Two bot processes on one PostgreSQL: the service level, real threads and connections."""
    from billable.models import ExternalIdentity, Order
    from billable.services import OrderService
    from bot_kit.payments.payload import InvoicePayload, sign_payload

    user = make_user()
    ExternalIdentity.objects.create(provider="telegram", external_id="555", user=user)
    order = OrderService.create_order(user.pk, [{"sku": "STARS_10", "quantity": 1}])
    payload = sign_payload(InvoicePayload(order.pk, 50, "XTR", 555), SECRETS)
    facts = PaymentFacts(telegram_user_id=555, charge_id="two-processes", payload=payload,
                         currency="XTR", total_amount=50)
    results = run_in_threads(4, lambda _: confirm_payment(facts, SECRETS))
    assert [r.created for r in results].count(True) == 1
    assert all(r.confirmed for r in results)
    assert Order.objects.get(pk=order.pk).status == "paid"
    from billable.services import TransactionService

    assert TransactionService.get_balance(user.pk, "CREDITS") == 10


FORGERIES = ["tampered", "wrong_amount", "cancelled", "second_charge", "other_user"]


@pytest.mark.parametrize("case", FORGERIES)
async def test_unhonourable_payment_grants_nothing_and_is_refunded(
        dp: Dispatcher, bot: Bot, session: FakeSession, updates: UpdateFactory, catalog: dict,
        case: str) -> None:
    from billable.services import OrderService

    alice = updates.user()
    invoice = await request_invoice(dp, bot, session, updates, alice)
    order_id = verify_payload(invoice["payload"], SECRETS).order_id
    payer, fields = alice, {}
    if case == "tampered":
        parts = invoice["payload"].split(".")
        parts[4] = "5"
        fields = {"payload": ".".join(parts), "total_amount": 5}
    elif case == "wrong_amount":
        fields = {"total_amount": 49}
    elif case == "cancelled":
        await OrderService.acancel_order(order_id)
    elif case == "second_charge":
        await pay(dp, bot, updates, alice, invoice, "first-charge")
    else:
        payer = updates.user()
        await dp.feed_update(bot, updates.command("start", user=payer))
    await pay(dp, bot, updates, payer, invoice, "bad-charge", **fields)
    expected = 10 if case == "second_charge" else 0
    assert await balance(alice) == expected
    payment = await TelegramPayment.objects.aget(charge_id="bad-charge")
    assert payment.status == "refunded" and payment.reason
    refund = await RefundRequest.objects.aget(payment=payment)
    assert refund.state == "done" and refund.requested_by == "auto"
    [call] = session.calls_to("refundStarPayment")
    assert call.params == {"user_id": payer.id, "telegram_payment_charge_id": "bad-charge"}
    texts = [str(c.params.get("text")) for c in session.calls_to("sendMessage")]
    assert len([t for t in texts if "being refunded" in t]) == 1
    # Once the refund went through, the user is told once more (the refund itself).
    assert texts.count("Your payment bad-charge was refunded.") == 1


async def test_rejected_payment_stays_queued_when_refund_call_fails(
        dp: Dispatcher, bot: Bot, session: FakeSession, updates: UpdateFactory,
        catalog: dict) -> None:
    alice = updates.user()
    invoice = await request_invoice(dp, bot, session, updates, alice)
    session.fail("refundStarPayment", status=500)
    await pay(dp, bot, updates, alice, invoice, "forged", total_amount=1)
    refund = await RefundRequest.objects.select_related("payment").aget(
        payment__charge_id="forged")
    assert refund.state == "pending" and refund.attempts == 1 and refund.last_error
    assert refund.payment.status == "rejected"


def test_payment_is_recorded_and_refunded_even_without_signing_secrets(catalog: dict,
                                                                       make_user: Any) -> None:
    facts = PaymentFacts(telegram_user_id=5, charge_id="no-keys", payload="b1.x.o.1.2.XTR.5.s",
                         currency="XTR", total_amount=2)
    result = confirm_payment(facts, ())
    assert result.created and not result.confirmed
    assert result.payment.reason == "payments_misconfigured" and result.refund_id is not None
