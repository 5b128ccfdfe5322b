"""Peer acceptance: a webhook bot process and a PostgreSQL "restart" (docs/delivery.md).

Promise under test: ``runbot --webhook`` answers ``200`` to an update only once it is committed
to the durable inbox, and after its database connections are terminated it recovers by itself
(no restart) — every paid update Telegram delivers (again and again until it gets a ``200``) is
granted exactly once. A real bot process, a real PostgreSQL, ``pg_terminate_backend`` of the
bot process's own connections to the test's own database only (the fault fixtures).
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from asgiref.sync import sync_to_async

from bot_kit.testing import FakeBotAPIServer, UpdateFactory
from tests.bot_kit.faults.conftest import (  # noqa: F401  (fixtures used by name)
    SECRET,
    Spawner,
    await_port,
    child_connections,
    fault_db,
    spawn,
    telegram,
    terminate_children,
)
from tests.bot_kit.faults.story import (
    assert_granted_exactly_once,
    deliver_until_acknowledged,
    inbox_states,
    post_update,
    purchases,
    wait_until,
)
from tests.helpers import free_port, requires_postgres

pytestmark = [requires_postgres, pytest.mark.postgres]


def stored(update_id: int) -> bool:
    from bot_kit.models import InboxUpdate

    return InboxUpdate.objects.filter(update_id=update_id).exists()


async def test_webhook_acknowledges_only_stored_updates_across_terminated_connections(
        spawn: Spawner, telegram: FakeBotAPIServer) -> None:  # noqa: F811
    updates = UpdateFactory(start_update_id=70_000)
    bought = await sync_to_async(purchases)(updates, 12, first_id=870_000, tag="W")
    paid = [purchase.update(updates) for purchase in bought]
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/webhook"
    worker = spawn.start("runbot", "--webhook", f"http://127.0.0.1:{port}", "--port", str(port),
                         "--lease", "2", "--interval", "0.2", "--no-refund-worker",
                         telegram_url=telegram.url, TELEGRAM_WEBHOOK_SECRET=SECRET)
    await await_port(port, child=worker)
    await deliver_until_acknowledged(url, paid[:4], secret=SECRET)
    await wait_until(lambda: child_connections(spawn.db.name) >= 1, timeout=30)

    acknowledged_without_row = []
    statuses = []
    async with aiohttp.ClientSession() as session:
        for index, update in enumerate(paid[4:]):
            if index in (0, 4):   # the "restart", twice, between deliveries
                assert await asyncio.to_thread(terminate_children, spawn.db.name) >= 1
            status = await post_update(session, url, update, secret=SECRET)
            statuses.append(status)
            if status == 200 and not await sync_to_async(stored)(update.update_id):
                acknowledged_without_row.append(update.update_id)
    assert acknowledged_without_row == []

    await deliver_until_acknowledged(url, paid, secret=SECRET)   # Telegram redelivers
    await wait_until(lambda: inbox_states().get("pending", 0) == 0
                     and inbox_states().get("done", 0) >= len(paid), timeout=60,
                     explain=inbox_states)
    await sync_to_async(assert_granted_exactly_once)(bought)
    assert worker.alive   # recovered by itself
    said = [str(c.params.get("text")) for c in telegram.api.calls_to("sendMessage")]
    assert not [t for t in said if "Traceback" in t or "Error" in t or "connection" in t]
    assert "Traceback" not in worker.output()
    print(f"statuses right after the terminations: {statuses}")
