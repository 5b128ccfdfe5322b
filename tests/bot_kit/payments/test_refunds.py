"""Story 5: refunds through the durable outbox, and refunded_payment service messages."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from django.utils import timezone

from bot_kit.models import RefundRequest, TelegramPayment
from bot_kit.payments.payload import verify_payload
from bot_kit.payments.refunds import RefundOutbox
from bot_kit.testing import FakeSession, UpdateFactory, make_bot
from tests.bot_kit.payments.conftest import ADMIN_ID, SECRETS
from tests.bot_kit.payments.flows import balance, pay, request_invoice, texts_sent
from tests.helpers import requires_postgres, run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def bought(dp: Dispatcher, bot: Bot, session: FakeSession, updates: UpdateFactory,
                 charge_id: str = "charge-1") -> tuple[Any, dict]:
    alice = updates.user()
    invoice = await request_invoice(dp, bot, session, updates, alice)
    await pay(dp, bot, updates, alice, invoice, charge_id)
    assert await balance(alice) == 10
    return alice, invoice


async def refund_debits(tg_user: Any) -> int:
    from billable.models import Transaction

    return await Transaction.objects.filter(
        user__billable_external_identities__external_id=str(tg_user.id),
        direction="DEBIT").acount()


async def admin_refund(dp: Dispatcher, bot: Bot, updates: UpdateFactory, reference: str) -> None:
    admin = updates.user(ADMIN_ID)
    await dp.feed_update(bot, updates.command("refund", reference, user=admin))


async def test_refund_retries_500_then_429_then_succeeds_across_rebuilds(
        make_dp: Any, config: Any, session: FakeSession, updates: UpdateFactory,
        catalog: dict) -> None:
    dp, bot = make_dp(config), make_bot(session)
    alice, invoice = await bought(dp, bot, session, updates)
    session.fail("refundStarPayment", status=500)
    session.fail("refundStarPayment", status=429, retry_after=30)
    await admin_refund(dp, bot, updates, "charge-1")
    refund = await RefundRequest.objects.aget(payment__charge_id="charge-1")
    assert (refund.state, refund.attempts) == ("pending", 1) and "Internal" in refund.last_error
    assert await balance(alice) == 10  # nothing reversed until Telegram refunds

    # A restart: new Dispatcher, Bot and outbox on the same database.
    dp, bot, clock = make_dp(config), make_bot(session), Clock()
    outbox = RefundOutbox(bot, clock=clock)
    assert await outbox.process_due() == {}  # backing off
    clock.advance(outbox.backoff(1) + 1)
    assert await outbox.process_due() == {refund.pk: "pending"}  # 429
    refund = await RefundRequest.objects.aget(pk=refund.pk)
    assert refund.next_attempt_at == clock.now + timedelta(seconds=30)
    clock.advance(29)
    assert await outbox.process_due() == {}
    clock.advance(2)
    assert await outbox.process_due() == {refund.pk: "done"}
    assert len(session.calls_to("refundStarPayment")) == 3
    assert await balance(alice) == 0 and await refund_debits(alice) == 1

    await dp.feed_update(bot, updates.refunded_payment(payload=invoice["payload"],
                                                       total_amount=50, charge_id="charge-1",
                                                       user=alice))
    clock.advance(3600)
    assert await outbox.process_due() == {}
    assert await refund_debits(alice) == 1
    from billable.models import Order

    order = await Order.objects.aget(pk=verify_payload(invoice["payload"], SECRETS).order_id)
    assert order.status == "refunded"


async def test_charge_already_refunded_counts_as_done(dp: Dispatcher, bot: Bot,
                                                      session: FakeSession,
                                                      updates: UpdateFactory,
                                                      catalog: dict) -> None:
    alice, _ = await bought(dp, bot, session, updates)
    session.fail("refundStarPayment", status=400,
                 description="Bad Request: CHARGE_ALREADY_REFUNDED")
    await admin_refund(dp, bot, updates, "charge-1")
    refund = await RefundRequest.objects.aget(payment__charge_id="charge-1")
    assert refund.state == "done" and await balance(alice) == 0


async def test_permanent_error_fails_and_admin_can_rearm(dp: Dispatcher, bot: Bot,
                                                         session: FakeSession,
                                                         updates: UpdateFactory,
                                                         catalog: dict) -> None:
    from billable.services import OrderService

    alice, invoice = await bought(dp, bot, session, updates)
    session.fail("refundStarPayment", status=400, description="Bad Request: CHARGE_NOT_FOUND")
    order_id = verify_payload(invoice["payload"], SECRETS).order_id
    await admin_refund(dp, bot, updates, str(order_id))  # by order id
    refund = await RefundRequest.objects.aget(payment__charge_id="charge-1")
    assert refund.state == "failed" and "CHARGE_NOT_FOUND" in refund.last_error
    assert await balance(alice) == 10
    await admin_refund(dp, bot, updates, "charge-1")
    refund = await RefundRequest.objects.aget(pk=refund.pk)
    assert refund.state == "done" and await balance(alice) == 0
    assert (await OrderService.aget_order(order_id)).status == "refunded"


async def test_backoff_doubles_and_gives_up_after_max_attempts(
        dp: Dispatcher, bot: Bot, session: FakeSession, updates: UpdateFactory,
        catalog: dict) -> None:
    await bought(dp, bot, session, updates)
    session.fail("refundStarPayment", status=502, times=10)
    clock = Clock()
    outbox = RefundOutbox(bot, clock=clock, base_delay=2, max_attempts=3)
    from bot_kit.payments.refunds import arequest_refund

    refund = await arequest_refund("charge-1")
    delays = []
    for _ in range(3):
        clock.advance(10_000)
        await outbox.process_due()
        row = await RefundRequest.objects.aget(pk=refund.pk)
        delays.append((row.next_attempt_at - clock.now).total_seconds())
    assert delays[:2] == [2, 4] and row.state == "failed" and row.attempts == 3


async def test_refund_command_is_admin_only_and_reports_unknown_ids(
        dp: Dispatcher, bot: Bot, session: FakeSession, updates: UpdateFactory,
        catalog: dict) -> None:
    alice, _ = await bought(dp, bot, session, updates)
    await dp.feed_update(bot, updates.command("refund", "charge-1", user=alice))
    await admin_refund(dp, bot, updates, "no-such-charge")
    await admin_refund(dp, bot, updates, "")
    texts = texts_sent(session)[-3:]
    assert texts == ["This command is for administrators only.",
                     "No payment found for this id.",
                     "Usage: /refund <charge id or order id>"]
    assert not session.calls_to("refundStarPayment") and await balance(alice) == 10


async def test_refunded_payment_message_reverses_once(dp: Dispatcher, bot: Bot,
                                                      session: FakeSession,
                                                      updates: UpdateFactory,
                                                      catalog: dict) -> None:
    alice, invoice = await bought(dp, bot, session, updates)
    for _ in range(2):
        await dp.feed_update(bot, updates.refunded_payment(
            payload=invoice["payload"], total_amount=50, charge_id="charge-1", user=alice))
    payment = await TelegramPayment.objects.aget(charge_id="charge-1")
    assert payment.status == "refunded" and await balance(alice) == 0
    assert await refund_debits(alice) == 1
    await admin_refund(dp, bot, updates, "charge-1")
    assert texts_sent(session)[-1] == "This payment has already been refunded."


@requires_postgres
def test_parallel_outbox_workers_call_telegram_once(session: FakeSession, catalog: dict,
                                                    make_user: Any) -> None:
    import asyncio

    from billable.services import OrderService
    from bot_kit.payments.refunds import request_refund

    user = make_user()
    order = OrderService.create_order(user.pk, [{"sku": "STARS_10", "quantity": 1}])
    OrderService.process_payment(order.pk, payment_id="par-1", payment_method="telegram_stars")
    payment = TelegramPayment.objects.create(charge_id="par-1", telegram_user_id=7, user=user,
                                             order=order, currency="XTR", total_amount=50,
                                             status="confirmed")
    request_refund("par-1")

    def work(_: int) -> dict[int, str]:
        return asyncio.run(RefundOutbox(make_bot(session)).process_due())

    results = run_in_threads(4, work)
    assert [r for r in results if r] and not [r for r in results if isinstance(r, Exception)]
    assert len(session.calls_to("refundStarPayment")) == 1
    assert TelegramPayment.objects.get(pk=payment.pk).status == "refunded"
    assert OrderService.get_order(order.pk).status == "refunded"


async def test_two_outboxes_make_one_call_per_charge_when_telegram_is_slower_than_the_lease(
        catalog: dict) -> None:
    import asyncio
    from collections import Counter

    from bot_kit.payments.refunds import arequest_refund

    for charge in ("slow-1", "slow-2"):
        await TelegramPayment.objects.acreate(charge_id=charge, telegram_user_id=7,
                                              currency="XTR", total_amount=5, status="rejected")
        await arequest_refund(charge)
    session = FakeSession()
    session.slow("refundStarPayment", 0.6)  # the lease is 0.2 s: only the heartbeat saves it
    workers = [RefundOutbox(make_bot(session), lease=0.2) for _ in range(2)]

    async def keep_working(outbox: RefundOutbox) -> None:
        for _ in range(8):
            await outbox.process_due()
            await asyncio.sleep(0.05)

    await asyncio.gather(*(keep_working(outbox) for outbox in workers))
    calls = Counter(c.params["telegram_payment_charge_id"]
                    for c in session.calls_to("refundStarPayment"))
    assert calls == {"slow-1": 1, "slow-2": 1}
    assert await RefundRequest.objects.filter(state="done").acount() == 2
