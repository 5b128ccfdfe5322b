"""Peer acceptance suite, part 2: the Telegram Stars purchase flow, refunds and subscriptions.

Written from the contract only (SPEC §8, docs/payments.md): a host ``Dispatcher`` driven through
``bot_kit.testing``; concurrency claims run with real threads on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.utils import timezone

from bot_kit import BillingConfig, setup_billing
from bot_kit.callbacks import BuyOffer
from bot_kit.testing import FakeBotAPIServer, FakeSession, UpdateFactory, make_bot
from tests.bot_kit.peer import (
    CYRILLIC,
    SECRET,
    assert_no_leak,
    count,
    give,
    orders_of,
    precheckout_answers,
    remaining,
    texts,
)

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = BillingConfig(offers=("PACK_10",), signing_secrets=(SECRET,), admin_ids=frozenset({999}),
                       subscription_offers=("MONTHLY",))


def host(config: BillingConfig = CONFIG) -> Dispatcher:
    dp = Dispatcher()
    setup_billing(dp, config)
    return dp


@pytest.fixture
def kit() -> tuple[FakeSession, Bot, UpdateFactory]:
    session = FakeSession()
    return session, make_bot(session), UpdateFactory()


async def invoice_for(dp: Dispatcher, bot: Bot, session: FakeSession, updates: UpdateFactory,
                      user: Any = None, sku: str = "PACK_10") -> dict[str, Any]:
    await dp.feed_update(bot, updates.callback(BuyOffer(sku=sku).pack(), user=user))
    params: dict[str, Any] = session.calls_to("sendInvoice")[-1].params
    return params


async def paid(dp: Dispatcher, bot: Bot, session: FakeSession, updates: UpdateFactory,
               charge_id: str = "stxPAID", user: Any = None) -> dict[str, Any]:
    invoice = await invoice_for(dp, bot, session, updates, user=user)
    await dp.feed_update(bot, updates.pre_checkout(payload=invoice["payload"], total_amount=50,
                                                   user=user))
    await dp.feed_update(bot, updates.successful_payment(payload=invoice["payload"],
                                                         total_amount=50, charge_id=charge_id,
                                                         user=user))
    return invoice


# -- invoices ----------------------------------------------------------------------------------


async def test_button_creates_pending_order_and_a_stars_invoice(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host()
    invoice = await invoice_for(dp, bot, session, updates)

    assert invoice["currency"] == "XTR"
    assert invoice["prices"] == [{"label": invoice["prices"][0]["label"], "amount": 50}]
    assert invoice.get("provider_token") in (None, "")
    payload = invoice["payload"]
    assert payload.isascii() and len(payload.encode()) <= 128
    assert SECRET not in payload
    [order] = await orders_of(updates.default_user.id)
    assert order.status == "pending" and order.currency == "XTR" and order.total_amount == 50
    assert str(order.pk) in payload


async def test_buy_sku_sends_invoice_directly_in_any_case(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host()
    await dp.feed_update(bot, updates.command("buy", "pack_10"))
    assert len(session.calls_to("sendInvoice")) == 1


@pytest.mark.parametrize("code", ["en", "ru"])
async def test_unknown_sku_button_is_answered_in_the_users_language(code: str, catalog,
                                                                    kit) -> None:
    session, bot, updates = kit
    dp = host()
    await dp.feed_update(bot, updates.callback(BuyOffer(sku="NOPE").pack(),
                                               user=updates.user(language_code=code)))
    said = [str(c.params.get("text", "")) for c in session.calls
            if c.method in ("sendMessage", "answerCallbackQuery") and c.params.get("text")]
    assert said and all(bool(CYRILLIC.search(s)) is (code == "ru") for s in said)
    assert session.calls_to("sendInvoice") == []


# -- pre-checkout ------------------------------------------------------------------------------


async def test_precheckout_ok_for_the_buyers_pending_order(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host()
    invoice = await invoice_for(dp, bot, session, updates)
    await dp.feed_update(bot, updates.pre_checkout(payload=invoice["payload"], total_amount=50))
    [answer] = precheckout_answers(session)
    assert answer["ok"] is True and not answer.get("error_message")


def tamper(payload: str) -> dict[str, str]:
    parts = payload.split(".")
    flipped_sig = [*parts[:-1], ("A" if parts[-1][0] != "A" else "B") + parts[-1][1:]]
    cheaper = list(parts)
    cheaper[4] = "1"
    return {"signature": ".".join(flipped_sig), "amount_field": ".".join(cheaper),
            "truncated": payload[:-3], "appended": payload + "x"}


@pytest.mark.parametrize("case", ["signature", "amount_field", "truncated", "appended", "empty",
                                  "garbage", "long", "unicode", "dots", "other_key"])
@pytest.mark.parametrize("code", ["en", "ru"])
async def test_precheckout_declines_tampered_or_garbled_payloads(case: str, code: str, catalog,
                                                                 kit) -> None:
    session, bot, updates = kit
    dp = host()
    user = updates.user(language_code=code)
    invoice = await invoice_for(dp, bot, session, updates, user=user)
    other_dp = host(BillingConfig(offers=("PACK_10",), signing_secrets=("another-secret-xyz",)))
    await other_dp.feed_update(bot, updates.callback(BuyOffer(sku="PACK_10").pack(), user=user))
    foreign_key = session.calls_to("sendInvoice")[-1].params["payload"]
    payloads = {**tamper(invoice["payload"]), "empty": "", "garbage": "hello",
                "long": "b1." + "x" * 300, "unicode": "b1.ключ.o.1.50.XTR.1.sig",
                "dots": "." * 20, "other_key": foreign_key}
    amount = 1 if case == "amount_field" else 50

    await dp.feed_update(bot, updates.pre_checkout(payload=payloads[case], total_amount=amount,
                                                   user=user))

    [answer] = precheckout_answers(session)
    assert answer["ok"] is False
    assert answer["error_message"]
    assert bool(CYRILLIC.search(answer["error_message"])) is (code == "ru")
    assert_no_leak(session)


@pytest.mark.parametrize("case", ["foreign_buyer", "amount", "currency", "cancelled",
                                  "already_paid"])
async def test_precheckout_declines_a_payment_that_does_not_match(case: str, catalog,
                                                                  kit) -> None:
    from billable.services import OrderService

    session, bot, updates = kit
    dp = host()
    buyer, stranger = updates.user(), updates.user(language_code="ru")
    invoice = await invoice_for(dp, bot, session, updates, user=buyer)
    [order] = await orders_of(buyer.id)
    kwargs: dict[str, Any] = {"payload": invoice["payload"], "total_amount": 50, "user": buyer}
    if case == "foreign_buyer":
        kwargs["user"] = stranger
    elif case == "amount":
        kwargs["total_amount"] = 49
    elif case == "currency":
        kwargs["currency"] = "USD"
    elif case == "cancelled":
        await sync_to_async(OrderService.cancel_order)(order.pk)
    else:
        await dp.feed_update(bot, updates.successful_payment(payload=invoice["payload"],
                                                             total_amount=50, user=buyer))

    await dp.feed_update(bot, updates.pre_checkout(**kwargs))

    answer = precheckout_answers(session)[-1]
    assert answer["ok"] is False and answer["error_message"]
    if case == "foreign_buyer":
        assert CYRILLIC.search(answer["error_message"])


async def test_precheckout_accepts_a_payload_signed_with_a_rotated_key(catalog, kit) -> None:
    session, bot, updates = kit
    old = host(BillingConfig(offers=("PACK_10",), signing_secrets=("old-secret-0123456789",)))
    invoice = await invoice_for(old, bot, session, updates)
    both = ("new-secret-0123456789", "old-secret-0123456789")
    rotated = host(BillingConfig(offers=("PACK_10",), signing_secrets=both))
    dropped = host(BillingConfig(offers=("PACK_10",), signing_secrets=("new-secret-0123456789",)))

    await rotated.feed_update(bot, updates.pre_checkout(payload=invoice["payload"],
                                                        total_amount=50))
    await dropped.feed_update(bot, updates.pre_checkout(payload=invoice["payload"],
                                                        total_amount=50))
    assert [a["ok"] for a in precheckout_answers(session)] == [True, False]


# -- confirmation ------------------------------------------------------------------------------


async def test_a_second_charge_for_a_paid_order_is_refunded(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host()
    invoice = await paid(dp, bot, session, updates, charge_id="stxFIRST")
    await dp.feed_update(bot, updates.successful_payment(payload=invoice["payload"],
                                                         total_amount=50, charge_id="stxSECOND"))

    assert await remaining(updates.default_user.id, "PREDICTIONS") == 10
    [refund] = session.calls_to("refundStarPayment")
    assert refund.params["telegram_payment_charge_id"] == "stxSECOND"
    assert refund.params["user_id"] == updates.default_user.id
    assert_no_leak(session)


@pytest.mark.parametrize("case", ["tampered", "foreign_buyer", "garbage", "amount", "long",
                                  "nul"])
async def test_a_payment_that_cannot_be_honoured_is_refunded_not_granted(case: str, catalog,
                                                                         kit) -> None:
    session, bot, updates = kit
    dp = host()
    buyer, payer = updates.user(), updates.user()
    invoice = await invoice_for(dp, bot, session, updates, user=buyer)
    payload, amount, user = invoice["payload"], 50, buyer
    if case == "tampered":
        payload = tamper(payload)["signature"]
    elif case == "foreign_buyer":
        user = payer
    elif case == "garbage":
        payload = "not-a-payload"
    elif case == "long":
        payload = invoice["payload"] + "x" * 300
    elif case == "nul":
        payload = invoice["payload"][:-2] + "\x00x"
    else:
        amount = 5

    await dp.feed_update(bot, updates.successful_payment(payload=payload, total_amount=amount,
                                                         charge_id=f"stx{case}", user=user))

    assert await remaining(buyer.id, "PREDICTIONS") == 0
    assert await remaining(payer.id, "PREDICTIONS") == 0
    [refund] = session.calls_to("refundStarPayment")
    assert refund.params["telegram_payment_charge_id"] == f"stx{case}"
    assert refund.params["user_id"] == user.id
    being_refunded, refunded = texts(session)  # one each: "being refunded", then "refunded"
    assert f"stx{case}" in being_refunded and f"stx{case}" in refunded
    assert_no_leak(session)


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_successful_payment_is_confirmed_once(catalog) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("real concurrency needs PostgreSQL (set DATABASE_URL)")
    session, updates = FakeSession(), UpdateFactory()
    bot = make_bot(session)
    dp = host()
    asyncio.run(invoice_for(dp, bot, session, updates))
    payload = session.calls_to("sendInvoice")[0].params["payload"]
    sessions = [FakeSession() for _ in range(6)]
    start = threading.Barrier(len(sessions))
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            worker_dp = host()  # another bot process: its own dispatcher and cache
            update = updates.successful_payment(payload=payload, total_amount=50,
                                                charge_id="stxRACE", update_id=10_000 + index)
            start.wait()
            asyncio.run(worker_dp.feed_update(make_bot(sessions[index]), update))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(sessions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert asyncio.run(remaining(updates.default_user.id, "PREDICTIONS")) == 10
    assert asyncio.run(count("bot_kit.TelegramPayment", charge_id="stxRACE")) == 1
    receipts = [t for s in sessions for t in texts(s) if "stxRACE" in t]
    assert len(receipts) == 1
    assert all(s.calls_to("refundStarPayment") == [] for s in sessions)


# -- refunds -----------------------------------------------------------------------------------


async def test_admin_refund_reverses_the_grant_and_tells_the_buyer(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host()
    buyer = updates.user(language_code="ru")
    await paid(dp, bot, session, updates, charge_id="stxREF", user=buyer)

    await dp.feed_update(bot, updates.command("refund", "stxREF", user=updates.user(999)))

    [call] = session.calls_to("refundStarPayment")
    assert call.params == {"user_id": buyer.id, "telegram_payment_charge_id": "stxREF"}
    [order] = await orders_of(buyer.id)
    assert order.status == "refunded"
    assert await remaining(buyer.id, "PREDICTIONS") == 0
    to_buyer = [c.params["text"] for c in session.calls_to("sendMessage")
                if c.params["chat_id"] == buyer.id and "stxREF" in c.params["text"]]
    assert len(to_buyer) == 2 and CYRILLIC.search(to_buyer[-1])  # receipt, refund notice


async def test_charge_already_refunded_counts_as_done(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host()
    await paid(dp, bot, session, updates, charge_id="stxGONE")
    session.fail("refundStarPayment", status=400,
                 description="Bad Request: CHARGE_ALREADY_REFUNDED")

    await dp.feed_update(bot, updates.command("refund", "stxGONE", user=updates.user(999)))

    [order] = await orders_of(updates.default_user.id)
    assert order.status == "refunded"
    assert await count("bot_kit.RefundRequest", state="done") == 1
    assert_no_leak(session)


async def test_refund_outbox_honours_retry_after(catalog, kit) -> None:
    from bot_kit.payments.refunds import RefundOutbox

    session, bot, updates = kit
    dp = host()
    await paid(dp, bot, session, updates, charge_id="stxSLOW")
    session.fail("refundStarPayment", status=429, retry_after=30)
    await dp.feed_update(bot, updates.command("refund", "stxSLOW", user=updates.user(999)))
    assert len(session.calls_to("refundStarPayment")) == 1
    assert await count("bot_kit.RefundRequest", state="pending") == 1

    start = timezone.now()
    early = RefundOutbox(bot, clock=lambda: start + timedelta(seconds=28))
    assert await early.process_due() == {}
    late = RefundOutbox(bot, clock=lambda: start + timedelta(seconds=32))
    assert list((await late.process_due()).values()) == ["done"]
    assert len(session.calls_to("refundStarPayment")) == 2
    [order] = await orders_of(updates.default_user.id)
    assert order.status == "refunded"


async def test_refunded_payment_is_handled_once(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host()
    invoice = await paid(dp, bot, session, updates, charge_id="stxTGREF")
    message = updates.refunded_payment(payload=invoice["payload"], total_amount=50,
                                       charge_id="stxTGREF")
    await dp.feed_update(bot, message)
    await dp.feed_update(bot, message)
    await dp.feed_update(bot, updates.refunded_payment(payload=invoice["payload"],
                                                       total_amount=50, charge_id="stxTGREF"))

    assert await remaining(updates.default_user.id, "PREDICTIONS") == 0
    [order] = await orders_of(updates.default_user.id)
    assert order.status == "refunded"
    notices = [t for t in texts(session) if "stxTGREF" in t]
    assert len(notices) == 2  # the receipt and one refund notice
    assert session.calls_to("refundStarPayment") == []


async def test_refunded_payment_for_an_unknown_charge_is_ignored(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host()
    await dp.feed_update(bot, updates.refunded_payment(payload="???", total_amount=50,
                                                       charge_id="stxNEVER"))
    assert_no_leak(session)
    assert await count("bot_kit.TelegramPayment") == 0


# -- Stars subscriptions -----------------------------------------------------------------------


@pytest.fixture
def monthly(make_product, make_offer) -> Any:
    premium = make_product("PREMIUM", name="Premium", product_type="period")
    return make_offer("MONTHLY", items=[(premium, 1, "days", 30)], price="100",
                      currency="XTR", name="Premium monthly")


async def subscribe(dp: Dispatcher, bot: Bot, session: FakeSession,
                    updates: UpdateFactory) -> str:
    await dp.feed_update(bot, updates.command("subscribe"))
    [link] = session.calls_to("createInvoiceLink")
    assert link.params["subscription_period"] == 2592000
    assert link.params["currency"] == "XTR" and len(link.params["prices"]) == 1
    assert link.params.get("provider_token") in (None, "")
    payload: str = link.params["payload"]
    assert len(payload.encode()) <= 128
    return payload


def renewal(updates: UpdateFactory, payload: str, charge: str, days: int,
            first: bool = False) -> Any:
    return updates.successful_payment(
        payload=payload, total_amount=100, charge_id=charge, is_recurring=True,
        is_first_recurring=first or None,
        subscription_expiration_date=int(time.time()) + days * 86400)


@sync_to_async
def premium_batches(telegram_id: int) -> list[Any]:
    from billable.models import ExternalIdentity, QuotaBatch

    user = ExternalIdentity.get_user_by_identity(str(telegram_id), provider="telegram")
    return list(QuotaBatch.objects.filter(user=user, product__product_key="PREMIUM")
                .order_by("valid_from"))


async def test_subscription_first_payment_and_renewals_extend_once_per_charge(monthly,
                                                                            kit) -> None:
    session, bot, updates = kit
    dp = host()
    payload = await subscribe(dp, bot, session, updates)
    await dp.feed_update(bot, updates.pre_checkout(payload=payload, total_amount=100))
    assert precheckout_answers(session)[-1]["ok"] is True

    await dp.feed_update(bot, renewal(updates, payload, "stxS1", 30, first=True))
    second = renewal(updates, payload, "stxS2", 60)
    await dp.feed_update(bot, second)
    await dp.feed_update(bot, second)
    await dp.feed_update(bot, renewal(updates, payload, "stxS2", 60))

    batches = await premium_batches(updates.default_user.id)
    assert len(batches) == 2
    assert batches[1].valid_from >= batches[0].expires_at - timedelta(seconds=1)
    assert await count("bot_kit.StarSubscription", state="active") == 1
    assert session.calls_to("refundStarPayment") == []


async def test_subscription_updates_change_state_and_notify_once(monthly, kit) -> None:
    session, bot, updates = kit
    dp = host()
    payload = await subscribe(dp, bot, session, updates)
    await dp.feed_update(bot, renewal(updates, payload, "stxSUB1", 30, first=True))
    before = len(texts(session))

    canceled = updates.subscription(state="canceled", payload=payload)
    await dp.feed_update(bot, canceled)
    await dp.feed_update(bot, canceled)
    await dp.feed_update(bot, updates.subscription(state="canceled", payload=payload))
    assert await count("bot_kit.StarSubscription", state="canceled") == 1
    assert len(texts(session)) == before + 1

    await dp.feed_update(bot, updates.subscription(state="active", payload=payload))
    assert await count("bot_kit.StarSubscription", state="active") == 1
    assert len(texts(session)) == before + 2
    assert_no_leak(session)


async def test_subscription_update_with_a_foreign_payload_is_ignored(monthly, kit) -> None:
    session, bot, updates = kit
    dp = host()
    payload = await subscribe(dp, bot, session, updates)
    await dp.feed_update(bot, renewal(updates, payload, "stxOWN", 30, first=True))
    stranger = updates.user()

    await dp.feed_update(bot, updates.subscription(state="canceled", payload=payload,
                                                   user=stranger))
    await dp.feed_update(bot, updates.subscription(state="failed", payload="garbage"))

    assert await count("bot_kit.StarSubscription", state="active") == 1
    assert_no_leak(session)


async def test_subscription_cancel_button_calls_edit_user_star_subscription(monthly,
                                                                           kit) -> None:
    session, bot, updates = kit
    dp = host()
    payload = await subscribe(dp, bot, session, updates)
    await dp.feed_update(bot, renewal(updates, payload, "stxFIRSTCHARGE", 30, first=True))
    await dp.feed_update(bot, renewal(updates, payload, "stxRENEWED", 60))
    await dp.feed_update(bot, updates.command("subscribe"))
    markup = session.calls_to("sendMessage")[-1].params["reply_markup"]
    [[cancel]] = markup["inline_keyboard"]

    await dp.feed_update(bot, updates.callback(cancel["callback_data"]))

    [edit] = session.calls_to("editUserStarSubscription")
    assert edit.params["telegram_payment_charge_id"] == "stxFIRSTCHARGE"
    assert edit.params["is_canceled"] is True
    assert await count("bot_kit.StarSubscription", state="canceled") == 1


async def test_refund_without_payments_configured_is_explained(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host(BillingConfig(offers=("PACK_10",)))
    await dp.feed_update(bot, updates.callback(BuyOffer(sku="PACK_10").pack()))
    assert session.calls_to("sendInvoice") == []
    assert len(everything := [c for c in session.calls if c.params.get("text")]) >= 1, everything
    assert_no_leak(session)


async def test_gift_of_quota_then_payment_keeps_both(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host()
    await give(updates.default_user.id, "PACK_10")
    await paid(dp, bot, session, updates, charge_id="stxMORE")
    assert await remaining(updates.default_user.id, "PREDICTIONS") == 20


async def test_slow_precheckout_validator_declines_in_time(catalog, kit) -> None:
    session, bot, updates = kit

    async def hangs(query: Any, order: Any) -> str | None:
        await asyncio.sleep(30)
        return None

    dp = host(BillingConfig(offers=("PACK_10",), signing_secrets=(SECRET,),
                            precheckout_validator=hangs, precheckout_timeout=0.3))
    invoice = await invoice_for(dp, bot, session, updates)
    started = time.monotonic()
    await dp.feed_update(bot, updates.pre_checkout(payload=invoice["payload"], total_amount=50))
    assert time.monotonic() - started < 5
    [answer] = precheckout_answers(session)
    assert answer["ok"] is False and answer["error_message"]


async def test_failing_precheckout_validator_declines_without_leaking(catalog, kit) -> None:
    session, bot, updates = kit

    async def broken(query: Any, order: Any) -> str | None:
        raise KeyError("db password is hunter2")

    dp = host(BillingConfig(offers=("PACK_10",), signing_secrets=(SECRET,),
                            precheckout_validator=broken))
    invoice = await invoice_for(dp, bot, session, updates)
    await dp.feed_update(bot, updates.pre_checkout(payload=invoice["payload"], total_amount=50))
    [answer] = precheckout_answers(session)
    assert answer["ok"] is False and "hunter2" not in answer["error_message"]
    assert_no_leak(session)


async def test_precheckout_is_answered_even_when_the_database_fails(catalog, kit,
                                                                    monkeypatch) -> None:
    from django.db import OperationalError

    from bot_kit import billing as port

    session, bot, updates = kit
    dp = host()
    invoice = await invoice_for(dp, bot, session, updates)

    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("could not connect to server at 10.0.0.5")

    monkeypatch.setattr(port, "order", down)
    await dp.feed_update(bot, updates.pre_checkout(payload=invoice["payload"], total_amount=50))
    [answer] = precheckout_answers(session)
    assert answer["ok"] is False and answer["error_message"]
    assert_no_leak(session)


async def test_refund_of_a_pending_order_or_twice_is_explained(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host()
    await paid(dp, bot, session, updates, charge_id="stxTWICE")
    admin = updates.user(999, language_code="ru")
    await dp.feed_update(bot, updates.command("refund", "stxTWICE", user=admin))
    await dp.feed_update(bot, updates.command("refund", "stxTWICE", user=admin))
    await invoice_for(dp, bot, session, updates)
    [_, pending] = await orders_of(updates.default_user.id)
    await dp.feed_update(bot, updates.command("refund", str(pending.pk), user=admin))

    assert len(session.calls_to("refundStarPayment")) == 1
    to_admin = [c.params["text"] for c in session.calls_to("sendMessage")
                if c.params["chat_id"] == 999]
    assert len(to_admin) == 3 and all(CYRILLIC.search(t) for t in to_admin)
    assert_no_leak(session)


# -- more of the contract ----------------------------------------------------------------------


@pytest.mark.parametrize("case", ["cancelled", "dropped_key"])
async def test_payment_for_a_cancelled_order_or_a_retired_key_is_refunded(case: str, catalog,
                                                                          kit) -> None:
    from billable.services import OrderService

    session, bot, updates = kit
    issuing = host(BillingConfig(offers=("PACK_10",),
                                 signing_secrets=("old-secret-0123456789",)))
    invoice = await invoice_for(issuing, bot, session, updates)
    if case == "cancelled":
        [order] = await orders_of(updates.default_user.id)
        await sync_to_async(OrderService.cancel_order)(order.pk)
        dp = issuing
    else:
        dp = host(BillingConfig(offers=("PACK_10",), signing_secrets=("new-secret-0123456789",)))

    await dp.feed_update(bot, updates.successful_payment(payload=invoice["payload"],
                                                         total_amount=50, charge_id="stxLATE"))

    assert await remaining(updates.default_user.id, "PREDICTIONS") == 0
    [refund] = session.calls_to("refundStarPayment")
    assert refund.params["telegram_payment_charge_id"] == "stxLATE"
    assert_no_leak(session)


async def test_host_callbacks_fire_once_per_event(catalog, kit) -> None:
    session, bot, updates = kit
    events: list[tuple[str, Any]] = []
    config = BillingConfig(offers=("PACK_10",), signing_secrets=(SECRET,),
                           admin_ids=frozenset({999}),
                           on_paid=lambda e: events.append(("paid", e.charge_id)),
                           on_refunded=lambda e: events.append(("refunded", e.charge_id)))
    dp = host(config)
    invoice = await invoice_for(dp, bot, session, updates)
    payment = updates.successful_payment(payload=invoice["payload"], total_amount=50,
                                         charge_id="stxCB")
    await dp.feed_update(bot, payment)
    await dp.feed_update(bot, payment)
    await dp.feed_update(bot, updates.command("refund", "stxCB", user=updates.user(999)))
    refunded = updates.refunded_payment(payload=invoice["payload"], total_amount=50,
                                        charge_id="stxCB")
    await dp.feed_update(bot, refunded)
    await dp.feed_update(bot, refunded)

    assert events == [("paid", "stxCB"), ("refunded", "stxCB")]
    assert len([t for t in texts(session) if "stxCB" in t]) == 3  # receipt, queued, refunded


async def test_refunded_payment_closes_a_pending_outbox_row(catalog, kit) -> None:
    from bot_kit.payments.refunds import RefundOutbox

    session, bot, updates = kit
    dp = host()
    invoice = await paid(dp, bot, session, updates, charge_id="stxRACE2")
    session.fail("refundStarPayment", status=500)
    await dp.feed_update(bot, updates.command("refund", "stxRACE2", user=updates.user(999)))
    assert await count("bot_kit.RefundRequest", state="pending") == 1

    await dp.feed_update(bot, updates.refunded_payment(payload=invoice["payload"],
                                                       total_amount=50, charge_id="stxRACE2"))

    assert await count("bot_kit.RefundRequest", state="pending") == 0
    later = RefundOutbox(bot, clock=lambda: timezone.now() + timedelta(hours=2))
    assert await later.process_due() == {}
    assert len(session.calls_to("refundStarPayment")) == 1
    assert await remaining(updates.default_user.id, "PREDICTIONS") == 0


async def test_refunding_a_subscription_charge_cancels_the_subscription(monthly, kit) -> None:
    session, bot, updates = kit
    dp = host()
    payload = await subscribe(dp, bot, session, updates)
    await dp.feed_update(bot, renewal(updates, payload, "stxSUBFIRST", 30, first=True))
    await dp.feed_update(bot, renewal(updates, payload, "stxSUBNEXT", 60))

    await dp.feed_update(bot, updates.command("refund", "stxSUBNEXT", user=updates.user(999)))

    [edit] = session.calls_to("editUserStarSubscription")
    assert edit.params["telegram_payment_charge_id"] == "stxSUBFIRST"
    assert edit.params["is_canceled"] is True
    assert len(await premium_batches(updates.default_user.id)) == 2
    assert_no_leak(session)


async def test_failed_renewal_update_tells_the_user_once(monthly, kit) -> None:
    session, bot, updates = kit
    dp = host()
    user = updates.user(language_code="ru")
    await dp.feed_update(bot, updates.command("subscribe", user=user))
    payload = session.calls_to("createInvoiceLink")[0].params["payload"]
    first = updates.successful_payment(payload=payload, total_amount=100, charge_id="stxF1",
                                       is_recurring=True, is_first_recurring=True, user=user,
                                       subscription_expiration_date=int(time.time()) + 86400)
    await dp.feed_update(bot, first)
    before = len(texts(session))
    failed = updates.subscription(state="failed", payload=payload, user=user)
    await dp.feed_update(bot, failed)
    await dp.feed_update(bot, failed)

    new = texts(session)[before:]
    assert len(new) == 1 and CYRILLIC.search(new[0])
    assert await count("bot_kit.StarSubscription", state="failed") == 1


async def test_second_subscribe_while_active_gets_no_second_link(monthly, kit) -> None:
    session, bot, updates = kit
    dp = host()
    payload = await subscribe(dp, bot, session, updates)
    await dp.feed_update(bot, renewal(updates, payload, "stxONE", 30, first=True))
    await dp.feed_update(bot, updates.command("subscribe"))
    await dp.feed_update(bot, updates.pre_checkout(payload=payload, total_amount=100))

    assert len(session.calls_to("createInvoiceLink")) == 1
    assert precheckout_answers(session)[-1]["ok"] is False


ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def bot_processes(api_urls: list[str]) -> Iterator[None]:
    """One host bot process (``tests.bot_kit.peer_process``) per loopback Bot API, on the test
    database; SIGTERM (then kill) on exit."""
    params = connection.settings_dict
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    url = (f"postgres://{params['USER']}{password}@{params['HOST']}:{params['PORT']}/"
           f"{params['NAME']}")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": url,
           "PYTHONPATH": str(ROOT)}
    processes = [subprocess.Popen([sys.executable, "-m", "tests.bot_kit.peer_process", api],
                                  cwd=ROOT, env=env) for api in api_urls]
    try:
        yield
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.django_db(transaction=True)
async def test_one_charge_delivered_to_three_bot_processes_is_confirmed_once(catalog) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("real concurrency needs PostgreSQL (set DATABASE_URL)")
    session, updates = FakeSession(), UpdateFactory()
    bot = make_bot(session)
    await invoice_for(host(), bot, session, updates)
    payload = session.calls_to("sendInvoice")[0].params["payload"]
    payment = updates.successful_payment(payload=payload, total_amount=50, charge_id="stxPROC")

    async with AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(FakeBotAPIServer()) for _ in range(3)]
        with bot_processes([server.url for server in servers]):
            for server in servers:
                server.put_update(payment)
            for server in servers:  # each process acknowledged the update (next offset)
                for _ in range(600):
                    if server.confirmed_offset > payment.update_id:
                        break
                    await asyncio.sleep(0.1)
                assert server.confirmed_offset > payment.update_id
            # aiogram handles polled updates as tasks: wait for the receipt, then the others
            for _ in range(300):
                if any(c.method == "sendMessage" for s in servers for c in s.calls):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(2)

    assert await remaining(updates.default_user.id, "PREDICTIONS") == 10
    assert await count("bot_kit.TelegramPayment", charge_id="stxPROC") == 1
    said = [c for s in servers for c in s.calls if c.method == "sendMessage"]
    assert len([c for c in said if "stxPROC" in str(c.params.get("text"))]) == 1
    assert not [c for s in servers for c in s.calls if c.method == "refundStarPayment"]


# -- catalog edges -----------------------------------------------------------------------------


@sync_to_async
def set_offer(sku: str, **fields: Any) -> None:
    from billable.models import Offer

    Offer.objects.filter(sku=sku).update(**fields)


async def test_keyboard_lists_only_purchasable_offers(catalog, kit) -> None:
    from tests.bot_kit.peer import buttons

    session, bot, updates = kit
    dp = host(BillingConfig(offers=("PACK_10", "TRIAL_3", "OTHER_5", "NOPE"),
                            signing_secrets=(SECRET,)))
    await dp.feed_update(bot, updates.command("buy"))
    assert [data for _, data in buttons(session)] == [BuyOffer(sku="PACK_10").pack()]


async def test_a_button_for_an_offer_deactivated_since_creates_no_order(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host()
    await dp.feed_update(bot, updates.command("buy"))
    await set_offer("PACK_10", is_active=False)
    await dp.feed_update(bot, updates.callback(BuyOffer(sku="PACK_10").pack()))
    assert session.calls_to("sendInvoice") == []
    assert await orders_of(updates.default_user.id) == []
    assert_no_leak(session)


@pytest.mark.parametrize("fallback", [False, True])
async def test_paywall_without_a_matching_offer(fallback: bool, catalog, kit) -> None:
    from aiogram import Router
    from aiogram.filters import Command
    from aiogram.types import Message

    from bot_kit import requires_quota
    from tests.bot_kit.peer import buttons

    session, bot, updates = kit
    router = Router(name="other")

    @router.message(Command("other"))
    @requires_quota("OTHER")
    async def other(message: Message) -> None:
        raise AssertionError("must not run")

    config = BillingConfig(offers=("PACK_10",), signing_secrets=(SECRET,),
                           paywall_fallback=("PACK_10",) if fallback else ())
    dp = host(config)
    dp.include_router(router)
    await dp.feed_update(bot, updates.command("other"))
    [said] = texts(session)
    assert "Other" in said
    expected = [BuyOffer(sku="PACK_10").pack()] if fallback else []
    assert [data for _, data in buttons(session)] == expected


async def test_fiat_invoice_uses_minor_units_and_the_provider_token(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host(BillingConfig(offers=("OTHER_5",), signing_secrets=(SECRET,),
                            provider_token="284685063:TEST:abc"))
    invoice = await invoice_for(dp, bot, session, updates, sku="OTHER_5")
    assert invoice["currency"] == "USD" and invoice["provider_token"] == "284685063:TEST:abc"
    assert [p["amount"] for p in invoice["prices"]] == [499]
    await dp.feed_update(bot, updates.pre_checkout(payload=invoice["payload"], total_amount=499,
                                                   currency="USD"))
    await dp.feed_update(bot, updates.successful_payment(payload=invoice["payload"],
                                                         total_amount=499, currency="USD",
                                                         charge_id="fiat-1"))
    assert precheckout_answers(session)[0]["ok"] is True
    assert await remaining(updates.default_user.id, "OTHER") == 5


async def test_fiat_offers_are_not_sold_without_a_provider_token(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host(BillingConfig(offers=("OTHER_5",), signing_secrets=(SECRET,)))
    await dp.feed_update(bot, updates.callback(BuyOffer(sku="OTHER_5").pack()))
    await dp.feed_update(bot, updates.command("buy", "OTHER_5"))
    assert session.calls_to("sendInvoice") == []
    assert_no_leak(session)


def test_stars_offer_with_a_fractional_price_is_refused_on_save(make_offer) -> None:
    from decimal import Decimal

    from django.core.exceptions import ValidationError

    from billable.models import Offer

    offer = Offer(sku="HALF_STAR", name="Half", price=Decimal("1.50"), currency="XTR")
    with pytest.raises(ValidationError) as refused:
        offer.full_clean()
    assert "price" in refused.value.message_dict


async def test_long_names_are_cut_to_telegrams_limits(make_product, make_offer, kit) -> None:
    session, bot, updates = kit

    @sync_to_async
    def long_catalog() -> None:
        product = make_product("PREDICTIONS", name="P")
        make_offer("PACK_10", items=[(product, 10)], price="50", currency="XTR",
                   name="👍" * 40, description="d" * 400)

    await long_catalog()
    invoice = await invoice_for(host(), bot, session, updates)
    assert len(invoice["title"].encode("utf-16-le")) // 2 <= 32
    assert len(invoice["description"].encode("utf-16-le")) // 2 <= 255
    assert "\ufffd" not in invoice["title"]


async def test_balance_shows_the_end_of_a_renewed_subscription(monthly, kit) -> None:
    session, bot, updates = kit
    dp = host()
    payload = await subscribe(dp, bot, session, updates)
    await dp.feed_update(bot, renewal(updates, payload, "stxB1", 30, first=True))
    await dp.feed_update(bot, renewal(updates, payload, "stxB2", 60))
    await dp.feed_update(bot, updates.command("balance"))
    batches = await premium_batches(updates.default_user.id)
    end = batches[-1].expires_at
    said = texts(session)[-1]
    assert "Premium" in said
    assert end.strftime("%Y") in said and (str(end.day) in said)


async def test_subscription_price_over_the_cap_gets_no_link(make_product, make_offer,
                                                            kit) -> None:
    session, bot, updates = kit

    from django.core.exceptions import ValidationError

    @sync_to_async
    def expensive() -> None:
        premium = make_product("PREMIUM", name="Premium", product_type="period")
        with pytest.raises(ValidationError):  # refused when saved ...
            make_offer("MONTHLY", items=[(premium, 1, "days", 30)], price="10001",
                       currency="XTR", name="Too much")
        make_offer("MONTHLY", items=[(premium, 1, "days", 30)], price="100",
                   currency="XTR", name="Too much")

    await expensive()
    await set_offer("MONTHLY", price=10001)  # ... and when raised behind the model's back
    await host().feed_update(bot, updates.command("subscribe"))
    assert session.calls_to("createInvoiceLink") == []
    assert_no_leak(session)


async def test_refund_outbox_backs_off_after_a_server_error_and_survives_a_restart(catalog,
                                                                                  kit) -> None:
    from bot_kit.payments.refunds import RefundOutbox

    session, bot, updates = kit
    dp = host()
    await paid(dp, bot, session, updates, charge_id="stx5XX")
    session.fail("refundStarPayment", status=502, times=2)
    await dp.feed_update(bot, updates.command("refund", "stx5XX", user=updates.user(999)))
    start = timezone.now()

    restarted = make_bot(session)  # a new process: only the database remembers the refund
    assert await RefundOutbox(restarted, clock=lambda: start).process_due() == {}
    second = RefundOutbox(restarted, clock=lambda: start + timedelta(seconds=6))
    assert list((await second.process_due()).values()) == ["pending"]
    third = RefundOutbox(restarted, clock=lambda: start + timedelta(minutes=5))
    assert list((await third.process_due()).values()) == ["done"]
    assert len(session.calls_to("refundStarPayment")) == 3
    assert await remaining(updates.default_user.id, "PREDICTIONS") == 0
