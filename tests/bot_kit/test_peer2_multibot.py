"""Peer acceptance: two bots on one database (docs/multibot.md, SPEC §8).

Written from the documentation only. Two Dispatchers, each with its own ``BillingConfig``
(``bot_id`` from the token) and its own fake Bot API session, share one catalog and ledger;
identities, payments, refunds and subscriptions must never cross from one bot to the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from asgiref.sync import sync_to_async

from bot_kit import BillingConfig, setup_billing
from bot_kit.callbacks import BuyOffer
from bot_kit.config import bot_id_from_token
from bot_kit.testing import FakeSession, UpdateFactory, make_bot
from tests.bot_kit.peer import assert_no_leak, buttons, precheckout_answers, texts

pytestmark = pytest.mark.django_db(transaction=True)

A, B = 111, 222
TOKENS = {A: "111:TOKEN-OF-BOT-A", B: "222:TOKEN-OF-BOT-B"}
SECRET = "one-secret-for-both-bots"


@dataclass
class Bots:
    """Two bots with their own Dispatcher, fake session and config."""

    dp: dict[int, Dispatcher] = field(default_factory=dict)
    bot: dict[int, Bot] = field(default_factory=dict)
    session: dict[int, FakeSession] = field(default_factory=dict)
    config: dict[int, BillingConfig] = field(default_factory=dict)

    async def feed(self, bot_id: int, update: Any) -> None:
        await self.dp[bot_id].feed_update(self.bot[bot_id], update)

    async def invoice(self, bot_id: int, sku: str, user: Any, updates: UpdateFactory
                      ) -> dict[str, Any]:
        await self.feed(bot_id, updates.callback(BuyOffer(sku=sku).pack(), user=user))
        return dict(self.session[bot_id].calls_to("sendInvoice")[-1].params)

    async def pay(self, bot_id: int, invoice: dict[str, Any], user: Any, charge_id: str,
                  updates: UpdateFactory) -> None:
        amount = invoice["prices"][0]["amount"]
        await self.feed(bot_id, updates.pre_checkout(payload=invoice["payload"],
                                                     total_amount=amount, user=user))
        await self.feed(bot_id, updates.successful_payment(
            payload=invoice["payload"], total_amount=amount, charge_id=charge_id, user=user))


@pytest.fixture
def shop(make_product: Callable[..., Any], make_offer: Callable[..., Any]) -> dict[str, Any]:
    """``CREDITS`` sold as ``STARS_10`` (50 ⭐), given as ``TRIAL`` (3, free); a 30-day
    ``PREMIUM`` period product sold as the subscription ``MONTHLY`` (100 ⭐)."""
    credits = make_product("CREDITS", name="Credits")
    premium = make_product("PREMIUM", name="Premium", product_type="period")
    return {
        "pack": make_offer("STARS_10", items=[(credits, 10)], price="50", currency="XTR",
                           name="10 credits"),
        "trial": make_offer("TRIAL", items=[(credits, 3)], price="0", name="Trial"),
        "monthly": make_offer("MONTHLY", items=[(premium, 1, "days", 30)], price="100",
                              currency="XTR", name="Premium month"),
    }


@pytest.fixture
def make_bots(shop: dict[str, Any]) -> Callable[..., Bots]:
    def build(*, wallet: str = "per_bot", secrets: dict[int, str] | None = None,
              admin_ids: frozenset[int] = frozenset()) -> Bots:
        bots = Bots()
        for bot_id, token in TOKENS.items():
            assert bot_id_from_token(token) == bot_id
            bots.session[bot_id] = FakeSession()
            bots.bot[bot_id] = make_bot(bots.session[bot_id], token=token)
            bots.config[bot_id] = BillingConfig(
                bot_id=bot_id, wallet=wallet, offers=("STARS_10",), trial_offer="TRIAL",
                subscription_offers=("MONTHLY",), admin_ids=admin_ids,
                signing_secrets=((secrets or {}).get(bot_id, SECRET),))
            bots.dp[bot_id] = Dispatcher()
            setup_billing(bots.dp[bot_id], bots.config[bot_id])
        return bots

    return build


@sync_to_async
def credits_of(provider: str, telegram_id: int) -> int:
    from billable.models import ExternalIdentity
    from billable.services import TransactionService

    user = ExternalIdentity.get_user_by_identity(str(telegram_id), provider=provider)
    return 0 if user is None else int(TransactionService.get_balance(user.pk, "CREDITS"))


@sync_to_async
def payment(charge_id: str) -> Any:
    from bot_kit.models import TelegramPayment

    return TelegramPayment.objects.select_related("order").get(charge_id=charge_id)


@sync_to_async
def order_of(payload: str) -> Any:
    from billable.models import Order

    order_id = int(payload.split(".")[3])
    return Order.objects.get(pk=order_id)


@sync_to_async
def ledger_bot_ids(provider: str, telegram_id: int) -> set[Any]:
    from billable.models import ExternalIdentity, Transaction

    user = ExternalIdentity.get_user_by_identity(str(telegram_id), provider=provider)
    return {(row.metadata or {}).get("bot_id") for row in Transaction.objects.filter(user=user)}


# -- identities and wallets ------------------------------------------------------------------


async def test_per_bot_wallet_gives_one_trial_and_one_account_per_bot(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    bots = make_bots(wallet="per_bot")
    alice = updates.user()
    for bot_id in (A, B):
        await bots.feed(bot_id, updates.command("trial", user=alice))
        await bots.feed(bot_id, updates.command("trial", user=alice))

    assert await credits_of(f"telegram:{A}", alice.id) == 3
    assert await credits_of(f"telegram:{B}", alice.id) == 3
    assert await credits_of("telegram", alice.id) == 0
    for bot_id in (A, B):   # granted, then refused: one trial per bot
        said = texts(bots.session[bot_id])
        assert len(said) == 2 and said[0] != said[1]
    assert await ledger_bot_ids(f"telegram:{A}", alice.id) == {str(A)}


async def test_per_bot_balance_shows_only_that_bots_purchases(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    bots = make_bots(wallet="per_bot")
    alice = updates.user()
    invoice = await bots.invoice(A, "STARS_10", alice, updates)
    await bots.pay(A, invoice, alice, "charge-a-1", updates)

    assert await credits_of(f"telegram:{A}", alice.id) == 10
    assert await credits_of(f"telegram:{B}", alice.id) == 0
    await bots.feed(B, updates.command("balance", user=alice))
    await bots.feed(A, updates.command("balance", user=alice))
    assert "10" in texts(bots.session[A])[-1]
    assert "10" not in texts(bots.session[B])[-1]


# -- invoices are bound to their bot -----------------------------------------------------------


async def test_invoice_payload_and_order_name_the_issuing_bot(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    bots = make_bots()
    invoice = await bots.invoice(A, "STARS_10", updates.user(), updates)
    payload = invoice["payload"]

    assert payload.startswith("b2.") and len(payload.encode()) <= 128
    assert payload.split(".")[-2] == str(A)
    assert (await order_of(payload)).metadata["bot_id"] == str(A)


async def test_pre_checkout_at_the_other_bot_is_declined_as_wrong_bot(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    bots = make_bots()
    alice = updates.user()
    invoice = await bots.invoice(A, "STARS_10", alice, updates)
    await bots.feed(B, updates.pre_checkout(payload=invoice["payload"], total_amount=50,
                                            user=alice))

    answer = precheckout_answers(bots.session[B])[-1]
    assert answer["ok"] is False
    assert answer["error_message"] == "This invoice was issued by another bot."
    assert bots.session[A].calls_to("answerPreCheckoutQuery") == []


async def test_wrong_bot_decline_is_in_the_buyers_language(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    bots = make_bots()
    ivan = updates.user(language_code="ru")
    invoice = await bots.invoice(A, "STARS_10", ivan, updates)
    await bots.feed(B, updates.pre_checkout(payload=invoice["payload"], total_amount=50,
                                            user=ivan))

    message = precheckout_answers(bots.session[B])[-1]["error_message"]
    assert "another bot" not in message and any("а" <= ch <= "я" for ch in message.lower())


async def test_payment_at_the_other_bot_is_refunded_by_the_receiving_bot_and_grants_nothing(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    bots = make_bots()
    alice = updates.user()
    invoice = await bots.invoice(A, "STARS_10", alice, updates)
    await bots.feed(B, updates.successful_payment(payload=invoice["payload"], total_amount=50,
                                                  charge_id="paid-at-b", user=alice))

    paid = await payment("paid-at-b")
    assert (paid.bot_id, paid.status, paid.reason) == (B, "refunded", "wrong_bot")
    refunds = bots.session[B].calls_to("refundStarPayment")
    assert [c.params["telegram_payment_charge_id"] for c in refunds] == ["paid-at-b"]
    assert refunds[0].params["user_id"] == alice.id
    assert bots.session[A].calls_to("refundStarPayment") == []
    for provider in ("telegram", f"telegram:{A}", f"telegram:{B}"):
        assert await credits_of(provider, alice.id) == 0
    assert (await order_of(invoice["payload"])).status == "pending"
    assert_no_leak(bots.session[B])


async def test_order_of_bot_a_stays_payable_at_bot_a_after_a_wrong_bot_payment(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    bots = make_bots()
    alice = updates.user()
    invoice = await bots.invoice(A, "STARS_10", alice, updates)
    await bots.feed(B, updates.successful_payment(payload=invoice["payload"], total_amount=50,
                                                  charge_id="paid-at-b", user=alice))
    await bots.pay(A, invoice, alice, "paid-at-a", updates)

    assert precheckout_answers(bots.session[A])[-1]["ok"] is True
    assert (await payment("paid-at-a")).status == "confirmed"
    assert (await order_of(invoice["payload"])).status == "paid"
    assert await credits_of(f"telegram:{A}", alice.id) == 10
    assert await credits_of(f"telegram:{B}", alice.id) == 0


async def test_redelivered_wrong_bot_payment_is_refunded_once(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    bots = make_bots()
    alice = updates.user()
    invoice = await bots.invoice(A, "STARS_10", alice, updates)
    update = updates.successful_payment(payload=invoice["payload"], total_amount=50,
                                        charge_id="paid-at-b", user=alice)
    await bots.feed(B, update)
    await bots.feed(B, update)

    assert len(bots.session[B].calls_to("refundStarPayment")) == 1


async def test_bots_with_their_own_secrets_decline_each_others_invoices(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    bots = make_bots(secrets={A: "secret-of-bot-a-000000", B: "secret-of-bot-b-000000"})
    alice = updates.user()
    invoice = await bots.invoice(A, "STARS_10", alice, updates)
    await bots.feed(B, updates.pre_checkout(payload=invoice["payload"], total_amount=50,
                                            user=alice))
    await bots.pay(A, invoice, alice, "own-bot", updates)

    answers = precheckout_answers(bots.session[B]) + precheckout_answers(bots.session[A])
    assert [a["ok"] for a in answers] == [False, True]
    assert await credits_of(f"telegram:{A}", alice.id) == 10
    assert_no_leak(bots.session[B])


async def test_a_payload_whose_bot_field_was_edited_is_declined(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    bots = make_bots()
    alice = updates.user()
    invoice = await bots.invoice(A, "STARS_10", alice, updates)
    parts = invoice["payload"].split(".")
    parts[-2] = str(B)
    forged = ".".join(parts)
    await bots.feed(B, updates.pre_checkout(payload=forged, total_amount=50, user=alice))
    await bots.feed(B, updates.successful_payment(payload=forged, total_amount=50,
                                                  charge_id="forged", user=alice))

    assert precheckout_answers(bots.session[B])[-1]["ok"] is False
    assert (await payment("forged")).status in {"rejected", "refunded"}
    assert await credits_of(f"telegram:{B}", alice.id) == 0


async def test_an_order_of_the_other_bot_spliced_into_a_payload_is_declined(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    """An order id of bot A spliced into bot B's payload is declined at B."""
    bots = make_bots()
    alice = updates.user()
    invoice_a = await bots.invoice(A, "STARS_10", alice, updates)
    invoice_b = await bots.invoice(B, "STARS_10", alice, updates)
    order_a = invoice_a["payload"].split(".")[3]
    parts = invoice_b["payload"].split(".")
    parts[3] = order_a   # B's signature no longer matches: declined either way
    await bots.feed(B, updates.pre_checkout(payload=".".join(parts), total_amount=50,
                                            user=alice))
    assert precheckout_answers(bots.session[B])[-1]["ok"] is False


# -- refunds stay with the bot that received the payment --------------------------------------


async def test_refund_outbox_of_one_bot_never_refunds_the_other_bots_charges(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    from bot_kit.payments.refunds import RefundOutbox, arequest_refund

    bots = make_bots()
    alice = updates.user()
    invoice = await bots.invoice(A, "STARS_10", alice, updates)
    await bots.pay(A, invoice, alice, "charge-of-a", updates)
    await arequest_refund("charge-of-a", reason="test")

    await RefundOutbox(bots.bot[B]).process_due()
    assert bots.session[B].calls_to("refundStarPayment") == []
    assert (await payment("charge-of-a")).status == "confirmed"

    await RefundOutbox(bots.bot[A]).process_due()
    calls = bots.session[A].calls_to("refundStarPayment")
    assert [c.params["telegram_payment_charge_id"] for c in calls] == ["charge-of-a"]
    assert (await payment("charge-of-a")).status == "refunded"
    assert await credits_of(f"telegram:{A}", alice.id) == 0


async def test_admin_refund_at_the_other_bot_is_queued_for_the_receiving_bot(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    from bot_kit.payments.refunds import RefundOutbox

    admin = updates.user()
    bots = make_bots(admin_ids=frozenset({admin.id}))
    alice = updates.user()
    invoice = await bots.invoice(A, "STARS_10", alice, updates)
    await bots.pay(A, invoice, alice, "charge-of-a", updates)

    await bots.feed(B, updates.command("refund", "charge-of-a", user=admin))
    assert bots.session[B].calls_to("refundStarPayment") == []
    assert texts(bots.session[B])   # the admin is answered
    assert_no_leak(bots.session[B])

    await RefundOutbox(bots.bot[A]).process_due()
    assert len(bots.session[A].calls_to("refundStarPayment")) == 1
    assert (await payment("charge-of-a")).status == "refunded"


async def test_refunded_payment_message_of_one_bot_revokes_only_that_bots_grant(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    bots = make_bots()
    alice = updates.user()
    for bot_id, charge in ((A, "c-a"), (B, "c-b")):
        invoice = await bots.invoice(bot_id, "STARS_10", alice, updates)
        await bots.pay(bot_id, invoice, alice, charge, updates)
    invoice_a = bots.session[A].calls_to("sendInvoice")[-1].params
    await bots.feed(A, updates.refunded_payment(payload=invoice_a["payload"], total_amount=50,
                                                charge_id="c-a", user=alice))

    assert await credits_of(f"telegram:{A}", alice.id) == 0
    assert await credits_of(f"telegram:{B}", alice.id) == 10
    assert (await payment("c-b")).status == "confirmed"


# -- subscriptions -----------------------------------------------------------------------------


async def _subscribe(bots: Bots, bot_id: int, user: Any, charge_id: str,
                     updates: UpdateFactory) -> dict[str, Any]:
    await bots.feed(bot_id, updates.command("subscribe", user=user))
    link = dict(bots.session[bot_id].calls_to("createInvoiceLink")[-1].params)
    await bots.feed(bot_id, updates.pre_checkout(payload=link["payload"], total_amount=100,
                                                 user=user))
    await bots.feed(bot_id, updates.successful_payment(
        payload=link["payload"], total_amount=100, charge_id=charge_id, user=user,
        is_recurring=True, is_first_recurring=True,
        subscription_expiration_date=2_000_000_000))
    return link


async def test_same_subscription_sku_in_the_second_bot_is_refused(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    bots = make_bots(wallet="shared")
    alice = updates.user()
    await _subscribe(bots, A, alice, "sub-a", updates)
    await bots.feed(B, updates.command("subscribe", user=alice))
    links = bots.session[B].calls_to("createInvoiceLink")
    if links:   # a link was made: its pre-checkout must be refused
        await bots.feed(B, updates.pre_checkout(payload=links[-1].params["payload"],
                                                total_amount=100, user=alice))
        assert precheckout_answers(bots.session[B])[-1]["ok"] is False
    assert (await payment("sub-a")).status == "confirmed"
    assert_no_leak(bots.session[B])


async def test_subscription_renewal_order_keeps_the_bot_of_the_first_order(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    bots = make_bots()
    alice = updates.user()
    link = await _subscribe(bots, A, alice, "sub-first", updates)
    await bots.feed(A, updates.successful_payment(
        payload=link["payload"], total_amount=100, charge_id="sub-renewal", user=alice,
        is_recurring=True, is_first_recurring=False,
        subscription_expiration_date=2_002_592_000))

    renewal = await payment("sub-renewal")
    assert renewal.status == "confirmed" and renewal.bot_id == A
    assert renewal.order.metadata["bot_id"] == str(A)
    assert renewal.order.pk != (await payment("sub-first")).order.pk


async def test_subscription_renewal_delivered_to_the_other_bot_is_not_granted(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    bots = make_bots()
    alice = updates.user()
    link = await _subscribe(bots, A, alice, "sub-first", updates)
    await bots.feed(B, updates.successful_payment(
        payload=link["payload"], total_amount=100, charge_id="renewal-at-b", user=alice,
        is_recurring=True, is_first_recurring=False,
        subscription_expiration_date=2_002_592_000))

    stray = await payment("renewal-at-b")
    assert stray.bot_id == B and stray.status in {"rejected", "refunded"}
    assert stray.reason == "wrong_bot"
    assert len(bots.session[B].calls_to("refundStarPayment")) == 1
    assert_no_leak(bots.session[B])


@sync_to_async
def subscription_state(payload: str) -> str:
    from bot_kit.models import StarSubscription

    return str(StarSubscription.objects.get(invoice_payload=payload).state)


@pytest.mark.parametrize("wallet", ["shared", "per_bot"])
async def test_the_other_bot_shows_a_subscription_but_offers_no_button_to_change_it(
        wallet: str, make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    """``editUserStarSubscription`` is per bot: bot B cannot cancel what bot A sold."""
    bots = make_bots(wallet=wallet)
    alice = updates.user()
    await _subscribe(bots, A, alice, "sub-a", updates)
    await bots.feed(B, updates.command("subscribe", user=alice))
    await bots.feed(A, updates.command("subscribe", user=alice))

    assert [data for _, data in buttons(bots.session[B]) if data] == []
    assert len([data for _, data in buttons(bots.session[A]) if data]) == 1
    assert "Premium month" in texts(bots.session[B])[-1]   # the state is still shown
    assert_no_leak(bots.session[B])


async def test_a_crafted_cancel_button_at_the_other_bot_changes_nothing(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    bots = make_bots()
    alice = updates.user()
    link = await _subscribe(bots, A, alice, "sub-a", updates)
    await bots.feed(A, updates.command("subscribe", user=alice))
    cancel = buttons(bots.session[A])[-1][1]
    await bots.feed(B, updates.callback(cancel, user=alice))

    assert bots.session[B].calls_to("editUserStarSubscription") == []
    assert await subscription_state(link["payload"]) == "active"
    assert_no_leak(bots.session[B])


async def test_a_subscription_update_of_bot_a_received_by_bot_b_changes_nothing(
        make_bots: Callable[..., Bots], updates: UpdateFactory) -> None:
    bots = make_bots()
    alice = updates.user()
    link = await _subscribe(bots, A, alice, "sub-a", updates)
    said = len(texts(bots.session[B]))
    await bots.feed(B, updates.subscription(state="canceled", payload=link["payload"],
                                            user=alice))

    assert await subscription_state(link["payload"]) == "active"
    assert len(texts(bots.session[B])) == said
    await bots.feed(A, updates.subscription(state="canceled", payload=link["payload"],
                                            user=alice))
    assert await subscription_state(link["payload"]) == "canceled"


async def test_invoices_and_subscriptions_sold_before_bot_id_was_set_keep_working(
        shop: dict[str, Any], updates: UpdateFactory) -> None:
    """A single-bot host turning on ``bot_id``: its ``b1`` invoices and subscriptions still pay
    and renew (they name no bot), and are recorded for the bot that received them."""
    session = FakeSession()
    bot = make_bot(session, token=TOKENS[A])
    before, after = Dispatcher(), Dispatcher()
    for dp, bot_id in ((before, None), (after, A)):
        setup_billing(dp, BillingConfig(bot_id=bot_id, offers=("STARS_10",),
                                        subscription_offers=("MONTHLY",),
                                        signing_secrets=(SECRET,)))
    alice = updates.user()
    await before.feed_update(bot, updates.callback(BuyOffer(sku="STARS_10").pack(), user=alice))
    invoice = session.calls_to("sendInvoice")[-1].params["payload"]
    await before.feed_update(bot, updates.command("subscribe", user=alice))
    link = session.calls_to("createInvoiceLink")[-1].params["payload"]
    await before.feed_update(bot, updates.successful_payment(
        payload=link, total_amount=100, charge_id="sub-1", user=alice, is_recurring=True,
        is_first_recurring=True, subscription_expiration_date=2_000_000_000))
    assert invoice.startswith("b1.") and link.startswith("b1.")

    await after.feed_update(bot, updates.pre_checkout(payload=invoice, total_amount=50,
                                                      user=alice))
    await after.feed_update(bot, updates.successful_payment(
        payload=invoice, total_amount=50, charge_id="pack-1", user=alice))
    await after.feed_update(bot, updates.successful_payment(
        payload=link, total_amount=100, charge_id="sub-2", user=alice, is_recurring=True,
        is_first_recurring=False, subscription_expiration_date=2_002_592_000))

    assert precheckout_answers(session)[-1]["ok"] is True
    for charge in ("pack-1", "sub-2"):
        paid = await payment(charge)
        assert (paid.status, paid.bot_id) == ("confirmed", A)
    assert await credits_of("telegram", alice.id) == 10
