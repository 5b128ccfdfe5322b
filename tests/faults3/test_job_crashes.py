"""The documented jobs (SPEC §10, docs/operations.md) SIGKILLed mid-run and restarted.

* ``billable_expire`` over thousands of past-due batches and overdue holds: killed again and
  again mid-run, the ledger check passes after every kill (no half-written chunk) and, once a
  run completes, every batch was expired exactly once.
* ``billable_refunds --loop`` killed while Telegram is answering ``refundStarPayment`` (the
  refund is made at Telegram, the worker dies before recording it): after restarts every
  charge is refunded once at Telegram, every order refunded and revoked once, the user told at
  most once, and the ledger check passes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from bot_kit.testing import FakeAPIError, FakeBotAPIServer, FakeSession, UpdateFactory, make_bot
from tests.faults3.conftest import Launcher, OwnDB, Proc, needs_postgres, terminate

pytestmark = [needs_postgres, pytest.mark.postgres]


# -- expiry -------------------------------------------------------------------------------------


def make_due_batches(users: int, per_user: int) -> int:
    """``users`` × ``per_user`` batches of an hourly offer, some partly spent, some partly held
    by holds that are overdue too; then the clock "moves on" (their ends are put in the past)."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from billable.models import Offer, OfferItem, Product, QuotaBatch, Reservation
    from billable.services import TransactionService

    product = Product.objects.get(product_key="PREDICTIONS")
    offer = Offer.objects.create(sku="FAULTS3_HOURLY", name="Hourly", price=0, currency="XTR")
    OfferItem.objects.create(offer=offer, product=product, quantity=5, period_unit="hours",
                             period_value=1)
    user_model = get_user_model()
    made = 0
    for n in range(users):
        user = user_model.objects.create(username=f"faults3-expire-{n}")
        made += len(TransactionService.grant_many(user.id, [(offer, None)] * per_user,
                                                  source="manual_grant"))
        if n % 3 == 0:
            TransactionService.consume_quota(user.id, "PREDICTIONS", amount=2)
        if n % 4 == 0:
            TransactionService.reserve_quota(user.id, "PREDICTIONS", amount=3,
                                             ttl=timedelta(seconds=60))
    past = timezone.now() - timedelta(minutes=1)
    QuotaBatch.objects.filter(source_offer=offer).update(expires_at=past)  # time passes
    Reservation.objects.update(expires_at=past)
    return made


def expiry_state() -> tuple[Counter[str], Counter[int]]:
    from billable.models import QuotaBatch, Transaction

    states = Counter(QuotaBatch.objects.values_list("state", flat=True))
    per_batch = Counter(Counter(Transaction.objects.filter(action_type="expiration")
                                .values_list("quota_batch_id", flat=True)).values())
    return states, per_batch


def wait_until(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def check_ledger() -> None:
    call_command("billable_check_ledger", verbosity=0)  # CommandError on a violation


async def test_expiry_job_killed_mid_run_expires_each_batch_once(
        launcher: Launcher, own_db: OwnDB, seed: int) -> None:
    rng = random.Random(seed)
    made = await sync_to_async(make_due_batches)(300, 12)
    kills = runs = 0
    with own_db.connect(autocommit=True) as watch:
        def expired() -> int:
            row = watch.execute("SELECT count(*) FROM billable_quota_batches "
                                "WHERE state = 'EXPIRED'").fetchone()
            return int(row[0]) if row else 0

        while True:
            runs += 1
            job = launcher.manage("expire", "billable_expire", app_name="faults3-expire")
            done = await asyncio.to_thread(expired)
            if kills == 5:  # the last run goes to the end
                assert await asyncio.to_thread(job.wait, 60) == 0, job.output()[-2000:]
                break
            # kill it somewhere in the middle of what is left (chunks of 500 batches)
            target = done + rng.randrange(1, max((made - done) // 2, 2))
            await asyncio.to_thread(
                wait_until, lambda j=job, t=target: not j.alive or expired() >= t)
            if not job.alive:
                assert job.process is not None and job.process.returncode == 0
                break
            job.kill()
            kills += 1
            await sync_to_async(check_ledger)()  # whatever committed is whole
    states, per_batch = await sync_to_async(expiry_state)()
    print(f"seed={seed} batches={made} runs={runs} kills={kills} states={dict(states)}")
    assert states["ACTIVE"] == 0, states
    assert set(per_batch) == {1}, per_batch  # one expiration DEBIT per batch, never two
    assert sum(per_batch.values()) == states["EXPIRED"]
    await sync_to_async(check_ledger)()


async def test_expiry_job_whose_connection_is_terminated_fails_cleanly_and_the_next_run_finishes(
        launcher: Launcher, own_db: OwnDB) -> None:
    """docs/operations.md: the expiry job fails (non-zero exit) when the database is unreachable
    — with a one-line error, not a traceback — and the next run completes the work."""
    made = await sync_to_async(make_due_batches)(200, 12)
    with own_db.connect(autocommit=True) as watch:
        def expired() -> int:
            row = watch.execute("SELECT count(*) FROM billable_quota_batches "
                                "WHERE state = 'EXPIRED'").fetchone()
            return int(row[0]) if row else 0

        job = launcher.manage("expire", "billable_expire", app_name="faults3-expire")
        await asyncio.to_thread(wait_until, lambda: not job.alive or expired() > 0)
        assert job.alive, job.output()[-2000:]
        assert await asyncio.to_thread(terminate, own_db.name, "faults3-expire") >= 1
        code = await asyncio.to_thread(job.wait, 30)
        await sync_to_async(check_ledger)()
        print(job.output()[-1500:])
        assert code not in (0, None), job.output()[-2000:]
        assert "Traceback" not in job.output(), job.output()[-3000:]
        rerun = launcher.manage("expire2", "billable_expire", app_name="faults3-expire")
        assert await asyncio.to_thread(rerun.wait, 60) == 0, rerun.output()[-2000:]
    states, per_batch = await sync_to_async(expiry_state)()
    assert states["ACTIVE"] == 0 and set(per_batch) == {1}
    assert sum(per_batch.values()) == states["EXPIRED"] == made
    await sync_to_async(check_ledger)()


# -- refunds ------------------------------------------------------------------------------------


async def buy_in_process(users: int) -> dict[int, str]:
    """Each user buys the 100-credit pack through the demo bot (in-process, the testing kit's
    fake session): ``/buy``, the pack button, pre-checkout, ``successful_payment``."""
    from examples.demo_bot.bot import build_dispatcher

    session = FakeSession()
    bot = make_bot(session)
    dp = build_dispatcher()
    factory = UpdateFactory(start_update_id=90_000, first_user_id=800_001)
    charges: dict[int, str] = {}
    for _ in range(users):
        person = factory.user()
        await dp.feed_update(bot, factory.command("buy", user=person))
        markup = session.calls_to("sendMessage")[-1].params["reply_markup"]
        markup = markup if isinstance(markup, dict) else markup.model_dump()
        data = next(b["callback_data"] for row in markup["inline_keyboard"] for b in row
                    if b.get("callback_data"))
        await dp.feed_update(bot, factory.callback(data, user=person))
        invoice = session.calls_to("sendInvoice")[-1].params
        amount = int(invoice["prices"][0]["amount"])
        await dp.feed_update(bot, factory.pre_checkout(payload=invoice["payload"],
                                                       total_amount=amount, user=person))
        charges[person.id] = f"stxF3REFUND{person.id}"
        await dp.feed_update(bot, factory.successful_payment(
            payload=invoice["payload"], total_amount=amount, charge_id=charges[person.id],
            user=person))
    await bot.session.close()
    return charges


def queue_refunds(charges: dict[int, str]) -> None:
    from bot_kit.models import TelegramPayment
    from bot_kit.payments.refunds import request_refund

    assert TelegramPayment.objects.filter(status="confirmed").count() == len(charges)
    for charge in charges.values():
        request_refund(charge, reason="faults3", requested_by="test")


def refunds_done() -> int:
    from bot_kit.models import RefundRequest
    return RefundRequest.objects.filter(state="done").count()


def check_refunded(charges: dict[int, str]) -> None:
    from billable.models import QuotaBatch, Transaction
    from bot_kit.models import RefundRequest, TelegramPayment

    assert set(RefundRequest.objects.values_list("state", flat=True)) == {"done"}
    for payment in TelegramPayment.objects.select_related("order"):
        assert payment.status == "refunded", payment
        assert payment.order is not None and payment.order.status == "refunded"
        batches = list(QuotaBatch.objects.filter(order_item__order=payment.order))
        assert [b.state for b in batches] == ["REVOKED"], batches
        revokes = Transaction.objects.filter(quota_batch__in=batches, direction="DEBIT",
                                             action_type="refund").count()
        assert revokes == 1, (payment.charge_id, revokes)
    call_command("billable_check_ledger", verbosity=0)


async def test_refund_worker_killed_while_telegram_refunds_refunds_each_charge_once(
        launcher: Launcher, own_db: OwnDB, seed: int) -> None:
    rng = random.Random(seed)
    users = 8
    charges = await buy_in_process(users)
    await sync_to_async(queue_refunds)(charges)
    refunded_at_telegram: Counter[str] = Counter()

    def refund_star_payment(params: dict[str, Any]) -> bool:
        charge = str(params["telegram_payment_charge_id"])
        refunded_at_telegram[charge] += 1
        if refunded_at_telegram[charge] > 1:
            raise FakeAPIError(400, "Bad Request: CHARGE_ALREADY_REFUNDED")
        return True

    async with FakeBotAPIServer(max_long_poll=0.5) as fake:
        fake.api.respond("refundStarPayment", refund_star_payment)
        fake.api.slow("refundStarPayment", 0.6)  # refunded at once, answered 0.6 s later
        env = {"TELEGRAM_BOT_TOKEN": "42:TEST", "TELEGRAM_API_SERVER": fake.url}

        def start() -> Proc:
            return launcher.manage("refunds", "billable_refunds", "--loop", "--interval", "0.2",
                                   "--lease", "1.5", "--limit", "50", app_name="faults3-refunds",
                                   **env)

        worker = start()
        kills = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120  # generous: process restarts are slow on a loaded machine
        while await sync_to_async(refunds_done)() < users:
            assert loop.time() < deadline, worker.output()[-3000:]
            if kills < 6:
                # right after the next refund reached Telegram, before its answer
                calls = len(fake.api.calls_to("refundStarPayment"))
                try:
                    await fake.wait_for_call("refundStarPayment", timeout=10, count=calls + 1)
                except TimeoutError:
                    continue
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                worker.kill()
                kills += 1
                worker = start()
            else:
                await asyncio.sleep(0.2)
        worker.close()
    print(f"seed={seed} kills={kills} telegram_calls={sum(refunded_at_telegram.values())}")
    assert set(refunded_at_telegram) == set(charges.values())
    await sync_to_async(check_refunded)(charges)
    notices = Counter(str(c.params.get("chat_id")) for c in fake.api.calls_to("sendMessage"))
    assert set(notices.values()) <= {1}, notices  # the refund notice at most once per user
