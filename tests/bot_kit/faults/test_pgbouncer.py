"""PgBouncer in transaction mode in front of the bot processes (docs/scaling.md).

Two bot processes (a poller and an inbox worker) and the refund worker share three server
connections through PgBouncer (``pool_mode = transaction``), with Django's
``DISABLE_SERVER_SIDE_CURSORS``; the jobs that stream rows with ``.iterator()``
(``billable_check_ledger``, ``billable_expire``) run through it too.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from bot_kit.testing import FakeBotAPIServer, UpdateFactory
from tests.bot_kit.faults.conftest import FaultDB, Spawner, await_port, free_port
from tests.bot_kit.faults.pgbouncer import PgBouncer, start_pgbouncer
from tests.bot_kit.faults.story import (
    assert_granted_exactly_once,
    confirmed,
    inbox_states,
    purchases,
    wait_until,
)
from tests.helpers import requires_postgres

pytestmark = [requires_postgres, pytest.mark.postgres]


@pytest.fixture
def pgbouncer(fault_db: FaultDB) -> Iterator[PgBouncer]:
    settings = connections["default"].settings_dict
    # Not under tmp_path: PgBouncer drops root and must reach its files as "nobody".
    root = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    try:
        yield from start_pgbouncer(root, pg_host=settings["HOST"], pg_port=settings["PORT"],
                                   user=settings["USER"], listen=free_port())
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_bot_processes_and_jobs_work_through_pgbouncer_in_transaction_mode(
        spawn: Spawner, telegram: FakeBotAPIServer, pgbouncer: PgBouncer) -> None:
    await await_port(pgbouncer.port, timeout=20)
    via = {"DATABASE_URL": spawn.db.url.replace(":5432/", f":{pgbouncer.port}/"),
           "FAULTS_PGBOUNCER": "1"}
    updates = UpdateFactory(start_update_id=70_000)
    bought = await sync_to_async(purchases)(updates, 15, first_id=870_000)
    spawn.start("runbot", "--interval", "0.2", "--concurrency", "4", telegram_url=telegram.url,
                **via)
    spawn.start("runbot", "--workers-only", "--interval", "0.1", "--no-refund-worker",
                telegram_url=telegram.url, **via)
    await telegram.wait_for_call("deleteWebhook", timeout=60)
    for purchase in bought:
        telegram.put_update(purchase.update(updates))
    await wait_until(lambda: confirmed(bought) == 15
                     and inbox_states().get("pending", 0) == 0, timeout=60)
    await sync_to_async(assert_granted_exactly_once)(bought)

    for job in ("billable_check_ledger", "billable_expire"):
        child = spawn.start(job, telegram_url=telegram.url, **via)
        assert await asyncio.to_thread(child.wait, 60) == 0, child.output()[-3000:]
    assert "transaction" in (pgbouncer.root / "pgbouncer.ini").read_text()
    assert "login attempt" in pgbouncer.log()  # the processes really went through PgBouncer
