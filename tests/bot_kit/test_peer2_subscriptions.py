"""Peer acceptance: Telegram Stars subscriptions (docs/payments.md "Stars subscriptions", SPEC §8).

Written from the documentation only: ``/subscribe`` → invoice link → first payment → renewals
(new charge ids) → ``subscription`` updates → cancel / re-enable buttons → refunds → expiry. Every
money effect happens once per charge, every notice once per change, whatever is redelivered.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from aiogram import Dispatcher, Router
from aiogram.filters import Command
from aiogram.types import Message
from asgiref.sync import sync_to_async
from django.utils import timezone

from bot_kit import BillingConfig, requires_quota
from bot_kit.testing import FakeSession, UpdateFactory
from tests.bot_kit.peer import CYRILLIC, assert_no_leak, buttons

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "peer2-subscriptions-secret"
PERIOD = 2_592_000
FIRST_EXPIRY = int((timezone.now() + timedelta(days=30)).timestamp())


@pytest.fixture
def shop(make_product: Callable[..., Any], make_offer: Callable[..., Any]) -> dict[str, Any]:
    """A 30-day ``PREMIUM`` period product sold as the subscription ``MONTHLY`` (100 ⭐)."""
    premium = make_product("PREMIUM", name="Premium", product_type="period")
    return {"monthly": make_offer("MONTHLY", items=[(premium, 1, "days", 30)], price="100",
                                  currency="XTR", name="Premium month")}


def premium_router() -> Router:
    router = Router(name="host")

    @router.message(Command("premium"))
    @requires_quota("PREMIUM")
    async def premium(message: Message) -> None:
        await message.answer("premium content")

    return router


class Story:
    """One subscriber of ``MONTHLY`` talking to one bot."""

    def __init__(self, dp: Dispatcher, bot: Any, session: FakeSession,
                 updates: UpdateFactory, events: dict[str, list[Any]], **user: Any) -> None:
        self.dp, self.bot, self.session, self.updates = dp, bot, session, updates
        self.events = events
        self.config: BillingConfig = dp.workflow_data["bot_kit_test_config"]
        self.user = updates.user(**user)
        self.payload = ""

    async def feed(self, update: Any) -> None:
        await self.dp.feed_update(self.bot, update)

    async def command(self, name: str) -> None:
        await self.feed(self.updates.command(name, user=self.user))

    async def subscribe(self) -> dict[str, Any]:
        await self.command("subscribe")
        link = dict(self.session.calls_to("createInvoiceLink")[-1].params)
        self.payload = link["payload"]
        return link

    def charge(self, charge_id: str, *, first: bool, expires: int = FIRST_EXPIRY,
               update_id: int | None = None) -> Any:
        return self.updates.successful_payment(
            payload=self.payload, total_amount=100, charge_id=charge_id, user=self.user,
            is_recurring=True, is_first_recurring=first, subscription_expiration_date=expires,
            update_id=update_id)

    async def pay_first(self, charge_id: str = "first") -> None:
        await self.subscribe()
        await self.feed(self.updates.pre_checkout(payload=self.payload, total_amount=100,
                                                  user=self.user))
        await self.feed(self.charge(charge_id, first=True))

    def state_update(self, state: str, update_id: int | None = None) -> Any:
        return self.updates.subscription(state=state, payload=self.payload, user=self.user,
                                         update_id=update_id)

    def said(self) -> list[str]:
        return [str(c.params["text"]) for c in self.session.calls_to("sendMessage")
                if c.params["chat_id"] == self.user.id]


@pytest.fixture
def story(shop: dict[str, Any], make_dp: Callable[..., Dispatcher], bot: Any,
          session: FakeSession, updates: UpdateFactory) -> Callable[..., Story]:
    def build(**user: Any) -> Story:
        events: dict[str, list[Any]] = {"paid": [], "refunded": [], "changed": []}
        config = BillingConfig(
            subscription_offers=("MONTHLY",), signing_secrets=(SECRET,),
            on_paid=lambda event: events["paid"].append(event),
            on_refunded=lambda event: events["refunded"].append(event),
            on_subscription_changed=lambda event: events["changed"].append(event))
        dp = make_dp(config, premium_router())
        dp.workflow_data["bot_kit_test_config"] = config
        return Story(dp, bot, session, updates, events, **user)

    return build


@sync_to_async
def subscription_row(payload: str) -> Any:
    from bot_kit.models import StarSubscription

    return StarSubscription.objects.get(invoice_payload=payload)


@sync_to_async
def paid_orders(telegram_id: int) -> int:
    from billable.models import ExternalIdentity, Order

    user = ExternalIdentity.get_user_by_identity(str(telegram_id), provider="telegram")
    return int(Order.objects.filter(user=user, status="paid").count())


@sync_to_async
def premium_batches(telegram_id: int) -> list[Any]:
    from billable.models import ExternalIdentity, QuotaBatch

    user = ExternalIdentity.get_user_by_identity(str(telegram_id), provider="telegram")
    return list(QuotaBatch.objects.filter(user=user, product__product_key="PREMIUM")
                .order_by("valid_from"))


@sync_to_async
def payment_of(charge_id: str) -> Any:
    from bot_kit.models import TelegramPayment

    return TelegramPayment.objects.get(charge_id=charge_id)


def edits(session: FakeSession) -> list[dict[str, Any]]:
    return [dict(c.params) for c in session.calls_to("editUserStarSubscription")]


# -- the invoice link and the first payment ----------------------------------------------------


async def test_subscribe_creates_a_30_day_stars_subscription_link(
        story: Callable[..., Story]) -> None:
    link = await story().subscribe()

    assert link["subscription_period"] == PERIOD
    assert link["currency"] == "XTR"
    assert [p["amount"] for p in link["prices"]] == [100]
    assert not link.get("provider_token")
    assert link["payload"].split(".")[2] == "s" and len(link["payload"].encode()) <= 128


async def test_first_payment_grants_the_period_and_records_the_subscription(
        story: Callable[..., Story]) -> None:
    alice = story()
    await alice.pay_first("first")
    await alice.command("premium")

    row = await subscription_row(alice.payload)
    assert (row.state, row.first_charge_id, row.last_charge_id) == ("active", "first", "first")
    assert int(row.expires_at.timestamp()) == FIRST_EXPIRY
    assert alice.said()[-1] == "premium content"
    assert len(alice.events["paid"]) == 1
    assert_no_leak(alice.session)


async def test_redelivered_first_payment_is_granted_and_answered_once(
        story: Callable[..., Story]) -> None:
    alice = story()
    await alice.pay_first("first")
    said = len(alice.said())
    update = alice.charge("first", first=True)
    await alice.feed(update)
    await alice.feed(update)

    assert await paid_orders(alice.user.id) == 1
    assert len(await premium_batches(alice.user.id)) == 1
    assert len(alice.said()) == said
    assert len(alice.events["paid"]) == 1


async def test_paying_an_old_link_again_is_declined_as_already_subscribed(
        story: Callable[..., Story]) -> None:
    alice = story()
    await alice.pay_first()
    await alice.feed(alice.updates.pre_checkout(payload=alice.payload, total_amount=100,
                                                user=alice.user))

    answer = alice.session.calls_to("answerPreCheckoutQuery")[-1].params
    assert answer["ok"] is False
    assert answer["error_message"] == ("You already have this subscription. "
                                       "Manage it with /subscribe.")


async def test_a_second_first_payment_is_refunded_and_only_its_own_subscription_cancelled(
        story: Callable[..., Story]) -> None:
    alice = story()
    await alice.pay_first("first")
    first_payload = alice.payload
    alice.payload = first_payload   # same offer, a second "first" charge getting through
    await alice.feed(alice.charge("second-first", first=True))

    second = await payment_of("second-first")
    assert second.reason == "already_subscribed" and second.status in {"rejected", "refunded"}
    refunds = alice.session.calls_to("refundStarPayment")
    assert [c.params["telegram_payment_charge_id"] for c in refunds] == ["second-first"]
    cancelled = [e["telegram_payment_charge_id"] for e in edits(alice.session)]
    assert "first" not in cancelled
    assert (await subscription_row(first_payload)).state == "active"
    assert await paid_orders(alice.user.id) == 1
    assert_no_leak(alice.session)


# -- renewals ----------------------------------------------------------------------------------


async def test_each_renewal_extends_the_period_once_per_charge(
        story: Callable[..., Story]) -> None:
    alice = story()
    await alice.pay_first("first")
    renewal = alice.charge("renewal-1", first=False, expires=FIRST_EXPIRY + PERIOD)
    await alice.feed(renewal)
    await alice.feed(renewal)   # redelivered: same update id
    await alice.feed(alice.charge("renewal-1", first=False, expires=FIRST_EXPIRY + PERIOD))

    batches = await premium_batches(alice.user.id)
    assert len(batches) == 2
    assert batches[1].valid_from == batches[0].expires_at   # contiguous
    assert await paid_orders(alice.user.id) == 2
    row = await subscription_row(alice.payload)
    assert (row.last_charge_id, row.renewals) == ("renewal-1", 1)
    assert int(row.expires_at.timestamp()) == FIRST_EXPIRY + PERIOD
    assert len(alice.events["paid"]) == 2


async def test_balance_and_subscribe_show_the_same_end_date_after_a_renewal(
        story: Callable[..., Story]) -> None:
    alice = story()
    await alice.pay_first("first")
    await alice.feed(alice.charge("renewal-1", first=False, expires=FIRST_EXPIRY + PERIOD))
    await alice.command("balance")
    await alice.command("subscribe")

    end = (await premium_batches(alice.user.id))[-1].expires_at
    balance, subscribe = alice.said()[-2:]
    assert end.strftime("%Y") in balance
    day = str(end.day)
    assert day in balance and day in subscribe


async def test_renewal_of_a_deactivated_offer_is_refunded(
        story: Callable[..., Story], shop: dict[str, Any]) -> None:
    alice = story()
    await alice.pay_first("first")
    offer = shop["monthly"]
    offer.is_active = False
    await sync_to_async(offer.save)()
    await alice.feed(alice.charge("renewal-late", first=False, expires=FIRST_EXPIRY + PERIOD))

    assert (await payment_of("renewal-late")).status in {"rejected", "refunded"}
    assert [c.params["telegram_payment_charge_id"]
            for c in alice.session.calls_to("refundStarPayment")] == ["renewal-late"]
    assert len(await premium_batches(alice.user.id)) == 1
    assert_no_leak(alice.session)


# -- subscription updates and the buttons ------------------------------------------------------


async def test_each_state_change_is_told_once_even_when_redelivered(
        story: Callable[..., Story]) -> None:
    alice = story()
    await alice.pay_first()
    said = len(alice.said())
    canceled = alice.state_update("canceled")
    await alice.feed(canceled)
    await alice.feed(canceled)                          # redelivered update
    await alice.feed(alice.state_update("canceled"))    # same state, new update
    await alice.feed(alice.state_update("active"))
    await alice.feed(alice.state_update("failed"))
    await alice.feed(alice.state_update("failed"))

    notices = alice.said()[said:]
    assert len(notices) == 3 and len(set(notices)) == 3
    assert [e.state for e in alice.events["changed"]] == ["active", "canceled", "active",
                                                         "failed"]   # created, then 3 changes
    assert (await subscription_row(alice.payload)).state == "failed"


async def test_cancelling_keeps_access_until_the_paid_period_ends(
        story: Callable[..., Story]) -> None:
    alice = story()
    await alice.pay_first()
    await alice.feed(alice.state_update("canceled"))
    await alice.command("premium")

    assert alice.said()[-1] == "premium content"


async def test_cancel_and_re_enable_buttons_use_the_first_charge_id(
        story: Callable[..., Story]) -> None:
    alice = story()
    await alice.pay_first("first")
    await alice.feed(alice.charge("renewal-1", first=False, expires=FIRST_EXPIRY + PERIOD))
    await alice.command("subscribe")
    cancel = buttons(alice.session)[-1][1]
    await alice.feed(alice.updates.callback(cancel, user=alice.user))
    assert (await subscription_row(alice.payload)).state == "canceled"
    await alice.command("subscribe")
    enable = buttons(alice.session)[-1][1]
    assert enable != cancel
    await alice.feed(alice.updates.callback(enable, user=alice.user))

    assert [(e["telegram_payment_charge_id"], e["is_canceled"]) for e in edits(alice.session)] \
        == [("first", True), ("first", False)]
    assert [e["user_id"] for e in edits(alice.session)] == [alice.user.id] * 2
    assert (await subscription_row(alice.payload)).state == "active"
    assert_no_leak(alice.session)


async def test_cancel_refused_by_telegram_keeps_the_state_and_tells_the_user_plainly(
        story: Callable[..., Story]) -> None:
    alice = story()
    await alice.pay_first("first")
    await alice.command("subscribe")
    cancel = buttons(alice.session)[-1][1]
    said = alice.said()
    alice.session.fail("editUserStarSubscription", status=400,
                       description="Bad Request: SUBSCRIPTION_NOT_ACTIVE")
    await alice.feed(alice.updates.callback(cancel, user=alice.user))

    assert (await subscription_row(alice.payload)).state == "active"
    assert len(alice.said()) == len(said) + 1
    assert alice.said()[-1] == ("Telegram did not accept this change; your subscription stays "
                                "as it was. /subscribe shows its state.")
    assert_no_leak(alice.session)
    assert alice.events["changed"][-1].state == "active"


async def test_another_users_cancel_button_does_nothing(
        story: Callable[..., Story]) -> None:
    alice = story()
    await alice.pay_first("first")
    await alice.command("subscribe")
    cancel = buttons(alice.session)[-1][1]
    mallory = alice.updates.user()
    await alice.feed(alice.updates.callback(cancel, user=mallory))

    assert edits(alice.session) == []
    assert (await subscription_row(alice.payload)).state == "active"
    assert_no_leak(alice.session)


async def test_subscription_update_for_an_unknown_payload_is_harmless(
        story: Callable[..., Story]) -> None:
    alice = story()
    alice.payload = "b1.xxxx.s.999999.100.XTR.1.garbage"
    await alice.feed(alice.state_update("canceled"))
    alice.payload = "not a payload at all"
    await alice.feed(alice.state_update("active"))

    assert alice.events["changed"] == []
    assert_no_leak(alice.session)


# -- refunds -----------------------------------------------------------------------------------


async def test_refunding_a_renewal_revokes_that_period_and_cancels_the_subscription_once(
        story: Callable[..., Story]) -> None:
    alice = story()
    await alice.pay_first("first")
    await alice.feed(alice.charge("renewal-1", first=False, expires=FIRST_EXPIRY + PERIOD))
    said = len(alice.said())
    refunded = alice.updates.refunded_payment(payload=alice.payload, total_amount=100,
                                              charge_id="renewal-1", user=alice.user)
    await alice.feed(refunded)
    await alice.feed(refunded)

    states = [b.state for b in await premium_batches(alice.user.id)]
    assert states == ["ACTIVE", "REVOKED"]
    assert [(e["telegram_payment_charge_id"], e["is_canceled"]) for e in edits(alice.session)] \
        == [("first", True)]
    assert len(alice.said()) - said == 2   # refunded_notice + subscription_refund_canceled
    assert len(alice.events["refunded"]) == 1
    assert (await payment_of("renewal-1")).status == "refunded"
    assert (await payment_of("first")).status == "confirmed"


async def test_outbox_refund_then_refunded_payment_message_tells_the_user_once(
        story: Callable[..., Story]) -> None:
    from bot_kit.payments.refunds import RefundOutbox, arequest_refund

    alice = story()
    await alice.pay_first("first")
    said = len(alice.said())
    await arequest_refund("first", reason="support")
    await RefundOutbox(alice.bot, config=alice.config).process_due()
    await alice.feed(alice.updates.refunded_payment(payload=alice.payload, total_amount=100,
                                                    charge_id="first", user=alice.user))

    assert len(alice.session.calls_to("refundStarPayment")) == 1
    assert len(edits(alice.session)) == 1
    assert len(alice.said()) - said == 2
    assert len(alice.events["refunded"]) == 1
    assert [b.state for b in await premium_batches(alice.user.id)] == ["REVOKED"]


# -- expiry ------------------------------------------------------------------------------------


async def test_after_the_paid_period_a_gated_command_asks_to_renew(
        story: Callable[..., Story]) -> None:
    from billable.models import QuotaBatch
    from bot_kit.models import StarSubscription

    alice = story()
    await alice.pay_first("first")
    past = timezone.now() - timedelta(days=1)
    await sync_to_async(QuotaBatch.objects.filter(product__product_key="PREMIUM").update)(
        valid_from=past - timedelta(days=30), expires_at=past)
    await sync_to_async(StarSubscription.objects.filter(invoice_payload=alice.payload).update)(
        expires_at=past)
    await alice.command("premium")

    reply = alice.said()[-1]
    assert reply != "premium content"
    assert "/subscribe" in reply and "Premium month" in reply
    assert past.strftime("%Y-%m-%d") in reply
    assert_no_leak(alice.session)


# -- Telegram refusing the invoice -------------------------------------------------------------


async def test_a_subscription_link_telegram_refuses_is_told_to_the_user_once(
        story: Callable[..., Story]) -> None:
    alice = story(language_code="ru")
    alice.session.fail("createInvoiceLink", status=400,
                       description="Bad Request: SUBSCRIPTION_PRICE_INVALID")
    await alice.command("subscribe")   # handled: nothing propagates to the inbox

    assert len(alice.said()) == 1
    assert CYRILLIC.search(alice.said()[0])
    assert "SUBSCRIPTION_PRICE_INVALID" not in alice.said()[0]
    assert_no_leak(alice.session)


async def test_after_a_refunded_renewal_subscribe_shows_the_end_of_the_period_still_paid(
        story: Callable[..., Story]) -> None:
    alice = story()
    await alice.pay_first("first")
    await alice.feed(alice.charge("renewal-1", first=False, expires=FIRST_EXPIRY + PERIOD))
    await alice.feed(alice.updates.refunded_payment(payload=alice.payload, total_amount=100,
                                                    charge_id="renewal-1", user=alice.user))
    await alice.command("subscribe")

    row = await subscription_row(alice.payload)
    assert int(row.expires_at.timestamp()) == FIRST_EXPIRY
    paid_until = row.expires_at.strftime("%Y-%m-%d")
    assert paid_until in alice.said()[-1]
    assert (row.expires_at + timedelta(days=30)).strftime("%Y-%m-%d") not in alice.said()[-1]


async def test_when_every_charge_is_refunded_subscribe_offers_a_new_subscription(
        story: Callable[..., Story]) -> None:
    alice = story()
    await alice.pay_first("first")
    await alice.feed(alice.charge("renewal-1", first=False, expires=FIRST_EXPIRY + PERIOD))
    for charge in ("renewal-1", "first"):
        await alice.feed(alice.updates.refunded_payment(
            payload=alice.payload, total_amount=100, charge_id=charge, user=alice.user))
    links = len(alice.session.calls_to("createInvoiceLink"))
    await alice.command("subscribe")
    await alice.command("premium")

    assert len(alice.session.calls_to("createInvoiceLink")) == links + 1   # no "paid until"
    assert alice.said()[-1] != "premium content"
    assert (await subscription_row(alice.payload)).expires_at <= timezone.now()
    assert_no_leak(alice.session)
