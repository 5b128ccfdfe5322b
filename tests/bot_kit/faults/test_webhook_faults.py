"""Webhook faults: no secret, forged updates, a worker SIGKILLed right after it answered, a
gated handler that works 30 s while Telegram redelivers it.

Must show 1, 5 and 7 of issue 11 (docs/scaling.md, "Failure modes").
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from asgiref.sync import sync_to_async

from bot_kit.testing import FakeBotAPIServer, UpdateFactory
from tests.bot_kit.faults.bot import ADMIN_ID
from tests.bot_kit.faults.conftest import SECRET, Spawner, await_port, free_port
from tests.bot_kit.faults.story import (
    assert_granted_exactly_once,
    balance,
    deliver_until_acknowledged,
    inbox_states,
    paid_state,
    post_update,
    purchases,
    wait_until,
    with_trial,
)
from tests.helpers import requires_postgres

pytestmark = [requires_postgres, pytest.mark.postgres]


def webhook_args(port: int, *extra: str) -> tuple[str, ...]:
    return ("runbot", "--webhook", f"http://127.0.0.1:{port}", "--port", str(port),
            "--lease", "2", "--interval", "0.2", *extra)


def replies(telegram: FakeBotAPIServer, text: str) -> list[Any]:
    return [c for c in telegram.api.calls_to("sendMessage") if text in str(c.params["text"])]


async def test_webhook_worker_refuses_forgeries_and_loses_no_paid_update_when_killed(
        spawn: Spawner, telegram: FakeBotAPIServer) -> None:
    updates = UpdateFactory(start_update_id=10_000)
    bought = await sync_to_async(purchases)(updates, 20)
    paid = [purchase.update(updates) for purchase in bought]
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/webhook"
    refused = spawn.start(*webhook_args(port), telegram_url=telegram.url)  # no secret
    worker = spawn.start(*webhook_args(port), telegram_url=telegram.url,
                         TELEGRAM_WEBHOOK_SECRET=SECRET)
    assert await asyncio.to_thread(refused.wait, 60) not in (0, None)
    assert "TELEGRAM_WEBHOOK_SECRET" in refused.output()
    await await_port(port, child=worker)

    # Forged updates (no header, wrong header) are refused and never stored or processed.
    forged = updates.command("refund", bought[0].charge_id, user=updates.user(ADMIN_ID))
    async with aiohttp.ClientSession() as session:
        assert await post_update(session, url, forged, secret=None) == 401
        assert await post_update(session, url, forged, secret=SECRET[:-1] + "x") == 401
        statuses = await asyncio.gather(*(post_update(session, url, u, secret=SECRET)
                                          for u in paid))
    await asyncio.sleep(0.15)
    worker.kill()  # SIGKILL right after answering 200 to all 20
    at_kill = await sync_to_async(paid_state)(bought)
    assert statuses.count(200) == 20  # acknowledged: Telegram will not deliver them again

    worker = spawn.start(*webhook_args(port), telegram_url=telegram.url,
                         TELEGRAM_WEBHOOK_SECRET=SECRET)
    await await_port(port, child=worker)
    await deliver_until_acknowledged(url, paid, secret=SECRET)  # duplicates are no-ops
    await wait_until(lambda: inbox_states().get("pending", 0) == 0 and
                     paid_state(bought)["confirmed"] == 20, timeout=40)

    await sync_to_async(assert_granted_exactly_once)(bought)
    receipts = [c.params["text"] for c in replies(telegram, "Payment received")]
    assert len(receipts) == len(set(receipts)) <= 20  # never a second receipt for a charge
    assert not telegram.api.calls_to("refundStarPayment")  # the forged /refund never ran
    assert len(telegram.api.calls_to("setWebhook")) == 2
    assert {c.params["secret_token"] for c in telegram.api.calls_to("setWebhook")} == {SECRET}
    assert "Traceback" not in worker.output()
    print(f"{at_kill['confirmed']} of 20 were confirmed when the worker was killed")


async def test_a_30_second_gated_webhook_handler_runs_once_and_is_charged_once(
        spawn: Spawner, telegram: FakeBotAPIServer) -> None:
    from billable.models import Transaction

    updates = UpdateFactory(start_update_id=30_000)
    tg_user, account = await sync_to_async(with_trial)(updates, 830_001)
    port = free_port()
    receiver = spawn.start(*webhook_args(port), telegram_url=telegram.url,
                           TELEGRAM_WEBHOOK_SECRET=SECRET, FAULTS_SLOW_SECONDS="30")
    rival = spawn.start("runbot", "--workers-only", "--lease", "2", "--interval", "0.2",
                        "--no-refund-worker", telegram_url=telegram.url,
                        FAULTS_SLOW_SECONDS="30")
    await await_port(port, child=receiver)
    slow = updates.command("slow", user=tg_user)
    url = f"http://127.0.0.1:{port}/telegram/webhook"
    async with aiohttp.ClientSession() as session:
        assert await post_update(session, url, slow, secret=SECRET) == 200
        for _ in range(3):  # Telegram redelivers while the handler works: no second run
            await asyncio.sleep(4)
            assert await post_update(session, url, slow, secret=SECRET) == 200

    await telegram.wait_for_call("sendMessage", timeout=45)
    await asyncio.sleep(2.5)  # one more lease: a second run would have started by now
    assert len(replies(telegram, "slow work done")) == 1
    assert await sync_to_async(balance)(account) == 2
    debits = await Transaction.objects.filter(user_id=account, direction="DEBIT").acount()
    assert debits == 1
    from bot_kit.models import InboxUpdate

    row = await InboxUpdate.objects.aget(update_id=slow.update_id)
    assert (row.state, row.attempts) == ("done", 1)
    assert rival.alive and receiver.alive
