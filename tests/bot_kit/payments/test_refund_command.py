"""The standalone refund worker (``manage.py billable_refunds``) tells the buyer, like the others.

With ``BOT_KIT_DISPATCHER`` naming the host's Dispatcher, the command's worker uses that
Dispatcher's ``BillingConfig``: a refund it completes sends one localized ``refunded_notice``
and calls ``on_refunded`` once. Without a configured Dispatcher the refund is still made and one
warning says nobody is told.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from io import StringIO
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from asgiref.sync import sync_to_async
from django.core.management import call_command

from bot_kit.config import BillingConfig
from bot_kit.testing import FakeSession, UpdateFactory, make_bot
from tests.bot_kit.payments.flows import balance, pay, pre_checkout, request_invoice, texts_sent

pytestmark = pytest.mark.django_db(transaction=True)

#: ``call_command`` in its own thread: the command runs its own event loop (``asyncio.run``).
run_command = sync_to_async(call_command, thread_sensitive=False)

#: The Dispatcher ``host_dispatcher`` gives the command (set by the test).
HOST: dict[str, Dispatcher] = {}


def host_dispatcher() -> Dispatcher:
    """The factory named by ``BOT_KIT_DISPATCHER`` in these tests."""
    return HOST["dp"]


@pytest.fixture
def command_bot(monkeypatch: pytest.MonkeyPatch, session: FakeSession) -> None:
    monkeypatch.setattr("bot_kit.management.commands._bot.command_bot",
                        lambda: make_bot(session))


async def buy_and_request_refund(dp: Dispatcher, bot: Bot, session: FakeSession,
                                 updates: UpdateFactory, catalog: dict) -> Any:
    from bot_kit.payments.refunds import request_refund

    ivan = updates.user(language_code="ru")
    invoice = await request_invoice(dp, bot, session, updates, ivan)
    assert (await pre_checkout(dp, bot, session, updates, ivan, invoice["payload"], 50))["ok"]
    await pay(dp, bot, updates, ivan, invoice, "paid-1")
    assert await balance(ivan) == 10
    await sync_to_async(request_refund)("paid-1", reason="test")
    return ivan


async def test_refund_worker_command_tells_the_buyer_once_in_their_language(
        make_dp: Any, config: BillingConfig, bot: Bot, session: FakeSession,
        updates: UpdateFactory, catalog: dict, command_bot: None, settings: Any) -> None:
    refunded: list[Any] = []

    async def on_refunded(event: Any) -> None:
        refunded.append(event)

    dp = make_dp(replace(config, on_refunded=on_refunded))
    HOST["dp"] = dp
    settings.BOT_KIT_DISPATCHER = f"{__name__}.host_dispatcher"
    ivan = await buy_and_request_refund(dp, bot, session, updates, catalog)
    sent_before = len(texts_sent(session))

    for _ in range(2):  # a second pass finds nothing due: nothing more is said
        await run_command("billable_refunds", stdout=StringIO())

    [refund] = session.calls_to("refundStarPayment")
    assert refund.params["telegram_payment_charge_id"] == "paid-1"
    told = [c.params for c in session.calls_to("sendMessage")][sent_before:]
    assert [(m["chat_id"], m["text"]) for m in told] == [(ivan.id, "Ваш платёж paid-1 возвращён.")]
    assert [e.charge_id for e in refunded] == ["paid-1"]
    assert await balance(ivan) == 0


async def test_refund_worker_command_without_a_bot_config_refunds_and_warns_once(
        make_dp: Any, config: BillingConfig, bot: Bot, session: FakeSession,
        updates: UpdateFactory, catalog: dict, command_bot: None, settings: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    dp = make_dp(config)
    settings.BOT_KIT_DISPATCHER = None
    ivan = await buy_and_request_refund(dp, bot, session, updates, catalog)
    sent_before = len(texts_sent(session))

    with caplog.at_level(logging.WARNING, logger="bot_kit.refunds"):
        out = StringIO()
        await run_command("billable_refunds", stdout=out)
    assert "done" in out.getvalue()
    assert [c.params["telegram_payment_charge_id"]
            for c in session.calls_to("refundStarPayment")] == ["paid-1"]
    assert texts_sent(session)[sent_before:] == []
    warnings = [r for r in caplog.records if "no bot BillingConfig" in r.getMessage()]
    assert len(warnings) == 1
    assert await balance(ivan) == 0
