"""Redis faults: the bot's Redis (FSM storage and throttling) is killed mid-run.

Must show 4 of issue 11: gated commands, ``/balance`` and payments keep working, throttling
fails open with one warning for the whole outage, nothing is lost.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from bot_kit.testing import FakeBotAPIServer, UpdateFactory
from tests.bot_kit.faults.conftest import RedisServer, Spawner
from tests.bot_kit.faults.story import (
    PACK_CREDITS,
    balance,
    inbox_states,
    paid_state,
    purchases,
    wait_until,
    with_trial,
)
from tests.helpers import requires_postgres

pytestmark = [requires_postgres, pytest.mark.postgres]


def texts_to(telegram: FakeBotAPIServer, chat_id: int) -> list[str]:
    return [str(c.params["text"]) for c in telegram.api.calls_to("sendMessage")
            if int(c.params["chat_id"]) == chat_id]


async def test_bot_keeps_billing_while_redis_is_down(
        spawn: Spawner, telegram: FakeBotAPIServer, redis_server: RedisServer) -> None:
    updates = UpdateFactory(start_update_id=60_000)
    tg_user, account = await sync_to_async(with_trial)(updates, 860_001)
    [purchase] = await sync_to_async(purchases)(updates, 1, first_id=861_000)
    bot = spawn.start("runbot", "--interval", "0.2", telegram_url=telegram.url,
                      FAULTS_REDIS_URL=redis_server.url, FAULTS_THROTTLE="1/60")
    await telegram.wait_for_call("deleteWebhook", timeout=60)

    async def say(*commands: str) -> list[str]:
        before = len(texts_to(telegram, tg_user.id))
        for command in commands:
            telegram.put_update(updates.command(command, user=tg_user))
        await wait_until(lambda: len(texts_to(telegram, tg_user.id)) >= before + len(commands))
        return texts_to(telegram, tg_user.id)[before:]

    # Redis up: the second gated command inside the window is throttled.
    first, second = await say("predict"), await say("predict")
    assert first[0].startswith("🔮") and second[0].startswith("Too many requests")

    redis_server.stop()
    answers = await say("predict", "predict", "balance")
    assert sum(text.startswith("🔮") for text in answers) == 2  # throttling failed open
    assert any(text.startswith("Your balance") for text in answers)
    telegram.put_update(purchase.update(updates))
    await wait_until(lambda: paid_state([purchase])["confirmed"] == 1
                     and inbox_states().get("pending", 0) == 0)

    assert await sync_to_async(balance)(account) == 0  # 3 trial predictions, 3 charged
    assert (await sync_to_async(paid_state)([purchase]))["balances"] == {PACK_CREDITS}
    log = bot.output()
    assert log.count("throttle backend RedisThrottle (failing open) unavailable") == 1
    assert log.count("FSM storage RedisStorage unavailable") == 1
    assert "Traceback" not in log
