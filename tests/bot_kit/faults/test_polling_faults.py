"""Polling faults: the bot process SIGKILLed right after ``getUpdates`` handed it 20 payments.

Must show 2 of issue 11: the offset is confirmed only after the batch is committed to the inbox,
so the restarted bot processes all of them, once.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from bot_kit.testing import FakeBotAPIServer, UpdateFactory
from tests.bot_kit.faults.conftest import Spawner
from tests.bot_kit.faults.story import (
    assert_granted_exactly_once,
    confirmed,
    inbox_states,
    paid_state,
    purchases,
    wait_until,
)
from tests.helpers import requires_postgres

pytestmark = [requires_postgres, pytest.mark.postgres]
POLLING = ("runbot", "--lease", "2", "--interval", "0.2")


async def test_polling_bot_killed_mid_batch_loses_no_paid_update(
        spawn: Spawner, telegram: FakeBotAPIServer) -> None:
    updates = UpdateFactory(start_update_id=40_000)
    bought = await sync_to_async(purchases)(updates, 20, first_id=840_000)
    paid = [purchase.update(updates) for purchase in bought]
    bot = spawn.start(*POLLING, telegram_url=telegram.url)
    await telegram.wait_for_call("deleteWebhook", timeout=60)
    for update in paid:
        telegram.put_update(update)
    await telegram.wait_delivered(20, timeout=30)
    await wait_until(lambda: confirmed(bought) >= 1, every=0.02)  # mid-batch
    bot.kill()
    at_kill = await sync_to_async(confirmed)(bought)

    bot = spawn.start(*POLLING, telegram_url=telegram.url)
    await wait_until(lambda: inbox_states().get("pending", 0) == 0 and
                     paid_state(bought)["confirmed"] == 20, timeout=40)
    await sync_to_async(assert_granted_exactly_once)(bought)
    assert telegram.confirmed_offset > max(u.update_id for u in paid)
    assert await asyncio.to_thread(bot.stop) == 0  # SIGTERM: a clean, graceful exit
    assert "bot 42 stopped" in bot.output() and "Traceback" not in bot.output()
    print(f"{at_kill} of 20 were confirmed when the bot was killed")
