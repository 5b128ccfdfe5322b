"""The full in-chat purchase through bot_kit, against a bare aiogram handler (same run).

One purchase is three updates fed to a real Dispatcher with the fake Bot API session: the buy
button (→ order + ``sendInvoice`` with a signed payload), the pre-checkout query (→ checks and
``answerPreCheckoutQuery``) and the successful payment (→ order paid exactly once, batches
granted, receipt). It is interleaved with a bare aiogram handler fed one update at a time;
every purchase must credit exactly its units once.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bots import KNOWN_TG_ID, Feed, dispatcher
from bench.common import Recorder, make_product
from bench.interleave import AsyncScenarios, Plan, interleave
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


class Shop:
    """A bot with the kit's purchase flow and a customer who buys ``SKU`` again and again."""

    def __init__(self) -> None:
        from aiogram import Dispatcher

        from bot_kit import BillingConfig, setup_billing
        from bot_kit.testing import FakeSession, UpdateFactory, make_bot

        self.dp = Dispatcher()
        setup_billing(self.dp, BillingConfig(offers=(SKU,), signing_secrets=(SECRET,)))
        self.session = FakeSession()
        self.bot, self.updates = make_bot(self.session), UpdateFactory()
        self.user = self.updates.user()
        self.done = 0

    async def buy(self) -> None:
        """Buy button → invoice, pre-checkout query, successful payment: one purchase.

        Each update is fed as production feeds it — Telegram's JSON parsed bound to the bot
        (``bench.bots.parse``) — not as an unbound ``Update`` that aiogram would dump and re-parse
        on every feed. The JSON is made on the spot (each step needs the previous one's
        invoice), a few tens of µs of a purchase's milliseconds."""
        from bench.bots import parse
        from bot_kit.callbacks import BuyOffer
        from bot_kit.testing.updates import update_to_json

        updates, user, bot = self.updates, self.user, self.bot

        async def feed(update: Any) -> None:
            await self.dp.feed_update(bot, parse(update_to_json(update), bot))

        await feed(updates.callback(BuyOffer(sku=SKU).pack(), user=user))
        invoice = self.session.calls_to("sendInvoice")[-1].params
        amount = int(invoice["prices"][0]["amount"])
        await feed(updates.pre_checkout(payload=invoice["payload"], total_amount=amount,
                                        user=user))
        await feed(updates.successful_payment(
            payload=invoice["payload"], total_amount=amount, currency=invoice["currency"],
            charge_id=f"bench-charge-{self.done}", user=user))
        self.done += 1


def credited(tg_user: Any) -> int:
    from billable.models import ExternalIdentity
    from billable.services import TransactionService

    owner = ExternalIdentity.get_user_by_identity(str(tg_user.id), provider="telegram")
    return int(TransactionService.get_balance(owner.pk, KEY)) if owner else 0


def run(rec: Recorder, *, quick: bool) -> None:
    """Purchases/s through the kit against a bare handler, and the exactly-once credit check."""
    catalog()
    plan = Plan.for_run(quick=quick)
    with AsyncScenarios() as runner, Progress(f"purchase [{rec.backend}]",
                                              total=plan.rounds) as bar:
        shop = Shop()
        bare = Feed(dispatcher("bare"), lambda i: KNOWN_TG_ID)
        comparison = interleave({
            "full purchase (buy, pre-checkout, payment)": runner.repeat(shop.buy),
            "bare aiogram handler (one update)": runner.repeat(bare.send, prepare=bare.prepare),
        }, plan, tick=bar.tick)
    rec.rates(comparison, "per s")
    rec.ratio("full purchase / one bare update", comparison,
              "full purchase (buy, pre-checkout, payment)", "bare aiogram handler (one update)")
    rec.target("every purchase credited exactly once (1 = yes)",
               value=1.0 if shop.done and credited(shop.user) == 10 * shop.done else 0.0,
               required=1.0, unit="ok")


if __name__ == "__main__":
    from bench.__main__ import run_alone

    sys.exit(run_alone("purchase", sys.argv[1:]))
