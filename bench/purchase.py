"""The full in-chat purchase through bot_kit, against a bare aiogram handler (same run).

One purchase is three updates fed to a real Dispatcher with the fake Bot API session: the buy
button (→ order + ``sendInvoice`` with a signed payload), the pre-checkout query (→ checks and
``answerPreCheckoutQuery``) and the successful payment (→ order paid exactly once, batches
granted, receipt). Records purchases/s, updates/s, the bare-handler rate, and checks that every
purchase credited exactly its units once.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from bench.common import Recorder, make_product, ratio, round_seconds
from bench.progress import Progress

SKU = "BENCH_STARS_10"
KEY = "BENCH_BUY_CREDITS"
SECRET = "bench-signing-secret-0123456789"


def catalog() -> None:
    """One Stars offer: 10 units of ``KEY`` for 50 XTR."""
    from billable.models import Offer, OfferItem

    offer = Offer.objects.create(sku=SKU, name="10 credits", price=Decimal("50"),
                                 currency="XTR")
    OfferItem.objects.create(offer=offer, product=make_product(KEY), quantity=10)


async def purchases(count: int, seconds: float) -> tuple[int, float, Any]:
    """Buy ``SKU`` up to ``count`` times within ``seconds``; return (done, elapsed, tg user)."""
    from aiogram import Dispatcher

    from bot_kit import BillingConfig, setup_billing
    from bot_kit.callbacks import BuyOffer
    from bot_kit.testing import FakeSession, UpdateFactory, make_bot

    dp = Dispatcher()
    setup_billing(dp, BillingConfig(offers=(SKU,), signing_secrets=(SECRET,)))
    session = FakeSession()
    bot, updates = make_bot(session), UpdateFactory()
    user = updates.user()
    done, started = 0, time.perf_counter()
    while done < count and time.perf_counter() - started < seconds:
        await dp.feed_update(bot, updates.callback(BuyOffer(sku=SKU).pack(), user=user))
        invoice = session.calls_to("sendInvoice")[-1].params
        amount = int(invoice["prices"][0]["amount"])
        await dp.feed_update(bot, updates.pre_checkout(payload=invoice["payload"],
                                                       total_amount=amount, user=user))
        await dp.feed_update(bot, updates.successful_payment(
            payload=invoice["payload"], total_amount=amount, currency=invoice["currency"],
            charge_id=f"bench-charge-{done}", user=user))
        done += 1
    return done, time.perf_counter() - started, user


async def bare_rate(count: int, seconds: float) -> float:
    """Updates/s of a Dispatcher with one no-op message handler (aiogram alone)."""
    from aiogram import Dispatcher, Router
    from aiogram.types import Message

    from bot_kit.testing import UpdateFactory, make_bot

    dp, router = Dispatcher(), Router()

    @router.message()
    async def noop(message: Message) -> None:
        return None

    dp.include_router(router)
    bot, updates = make_bot(), UpdateFactory()
    user = updates.user()
    done, started = 0, time.perf_counter()
    while done < count and time.perf_counter() - started < seconds:
        await dp.feed_update(bot, updates.message("go", user=user))
        done += 1
    return done / (time.perf_counter() - started)


def credited(tg_user: Any) -> int:
    from billable.models import ExternalIdentity
    from billable.services import TransactionService

    owner = ExternalIdentity.get_user_by_identity(str(tg_user.id), provider="telegram")
    return int(TransactionService.get_balance(owner.pk, KEY)) if owner else 0


def run(rec: Recorder, *, quick: bool) -> None:
    """Purchases/s through the kit, bare updates/s, and the exactly-once credit check."""
    from django.db import connections

    catalog()
    seconds = round_seconds() * 2
    with Progress(f"purchase [{rec.backend}]", total=2) as bar:
        bare = asyncio.run(bare_rate(5000, seconds))
        bar.tick()
        done, elapsed, user = asyncio.run(purchases(1000, seconds))
        connections.close_all()
        bar.tick()
    per_second = done / elapsed if elapsed else 0.0
    rec.metric("bare aiogram handler", bare, "updates/s")
    rec.metric("full purchase (buy, pre-checkout, payment)", per_second, "purchases/s",
               purchases=done)
    rec.metric("full purchase: updates", 3 * per_second, "updates/s")
    rec.metric("full purchase updates / bare handler updates", ratio(3 * per_second, bare) or 0.0,
               "x")
    rec.target("every purchase credited exactly once (1 = yes)",
               value=1.0 if done and credited(user) == 10 * done else 0.0, required=1.0,
               unit="ok")
