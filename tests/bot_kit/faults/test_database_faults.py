"""Database faults: every connection of a running bot and of a refund worker is terminated
(twice, under load) — the PostgreSQL "restart" seen from the processes.

Must show 3 of issue 11: later updates and refunds succeed without restarting anything, no
payment is lost or doubled, and no raw database error reaches a user or a traceback a log.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from bot_kit.testing import FakeBotAPIServer, UpdateFactory
from tests.bot_kit.faults.conftest import Spawner, child_connections, terminate_children
from tests.bot_kit.faults.story import (
    PACK_CREDITS,
    confirmed,
    inbox_rows,
    inbox_states,
    paid_state,
    purchases,
    wait_until,
)
from tests.helpers import requires_postgres

pytestmark = [requires_postgres, pytest.mark.postgres]


def refunds_done(charges: list[str]) -> int:
    from bot_kit.models import RefundRequest

    return RefundRequest.objects.filter(payment__charge_id__in=charges, state="done").count()


def queue_refunds(charges: list[str]) -> None:
    from bot_kit.payments.refunds import request_refund

    for charge in charges:
        request_refund(charge, reason="fault test")


async def test_bot_and_refund_worker_survive_terminated_connections(
        spawn: Spawner, telegram: FakeBotAPIServer) -> None:
    from bot_kit.models import TelegramPayment

    updates = UpdateFactory(start_update_id=50_000)
    first = await sync_to_async(purchases)(updates, 10, first_id=850_000, tag="A")
    second = await sync_to_async(purchases)(updates, 10, first_id=851_000, tag="B")
    bot = spawn.start("runbot", "--lease", "2", "--interval", "0.2", "--no-refund-worker",
                      telegram_url=telegram.url)
    refunder = spawn.start("billable_refunds", "--loop", "--interval", "0.2",
                           telegram_url=telegram.url)
    await telegram.wait_for_call("deleteWebhook", timeout=60)
    for purchase in first:
        telegram.put_update(purchase.update(updates))
    await wait_until(lambda: confirmed(first) == 10, timeout=30)
    await wait_until(lambda: child_connections(spawn.db.name) >= 2, timeout=30)

    killed = await asyncio.to_thread(terminate_children, spawn.db.name)
    assert killed >= 2  # the bot's and the refund worker's connections
    refunded = [p.charge_id for p in first[:4]]
    await sync_to_async(queue_refunds)(refunded)
    for index, purchase in enumerate(second):
        telegram.put_update(purchase.update(updates))
        telegram.put_update(updates.command("balance", user=purchase.tg_user))
        if index == 4:  # and once more under load
            await asyncio.sleep(0.2)
            await asyncio.to_thread(terminate_children, spawn.db.name)

    await wait_until(lambda: confirmed(second) == 10 and refunds_done(refunded) == 4
                     and inbox_states().get("pending", 0) == 0, timeout=60,
                     explain=lambda: (confirmed(second), refunds_done(refunded),
                                      [r for r in inbox_rows() if r[2] != "done"]))
    assert bot.alive and refunder.alive  # nothing was restarted
    kept = [p for p in first + second if p.charge_id not in refunded]
    state = await sync_to_async(paid_state)(kept)
    assert state == {"confirmed": 16, "paid_orders": 16, "balances": {PACK_CREDITS},
                     "grants_per_charge": {1}}
    refunded_rows = TelegramPayment.objects.filter(charge_id__in=refunded, status="refunded")
    assert await refunded_rows.acount() == 4
    calls = [c.params["telegram_payment_charge_id"]
             for c in telegram.api.calls_to("refundStarPayment")]
    assert sorted(calls) == sorted(refunded)  # one call per refund
    messages = telegram.api.calls_to("sendMessage")
    texts = [str(c.params.get("text")) for c in messages]
    buyers = {p.tg_user.id for p in second}
    answers = [c for c in messages if int(c.params["chat_id"]) in buyers
               and "Payment received" not in str(c.params.get("text"))]
    assert len(answers) == 10  # every /balance answered
    assert not [t for t in texts if "Error" in t or "unavailable" in t.lower()]
    for child in (bot, refunder):
        output = child.output()
        at = output.find("Traceback")
        assert at < 0, output[max(at - 1500, 0):at + 3000]  # the traceback and what led to it
