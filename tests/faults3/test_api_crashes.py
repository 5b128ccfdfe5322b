"""The REST API under crashes: uvicorn (the demo project, one worker) SIGKILLed while customers
pay, exchange and spend with retry keys; its PostgreSQL connections terminated mid-stream; a
request stuck behind a row lock past the server's ``lock_timeout`` / ``statement_timeout``.

Promise checked (docs/api.md, docs/guarantees.md): a client that repeats a request with the same
key after a crash or a ``503`` gets the same result; nothing is charged or granted twice; no
answer is ever a ``500``; the ledger check passes.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from asgiref.sync import sync_to_async

from tests.faults3.conftest import (
    Launcher,
    OwnDB,
    admin_sql,
    free_port,
    needs_postgres,
    terminate,
    wait_port,
)
from tests.faults3.story import Tally, api_client, call, check_money, customer

pytestmark = [needs_postgres, pytest.mark.postgres]

API_APP = "faults3-api"
#: The async pool of the API process names its connections itself (billable.ledger.apool).
POOL_APP = "billable-gated-fast-path"


async def start_api(launcher: Launcher, port: int, **env: str):  # type: ignore[no-untyped-def]
    proc = launcher.uvicorn(port, app_name=API_APP, **env)
    await asyncio.to_thread(wait_port, port, 30, proc)
    return proc


async def test_api_killed_mid_stream_pays_grants_and_charges_once(
        launcher: Launcher, own_db: OwnDB, seed: int) -> None:
    rng = random.Random(seed)
    customers, consumes, kills = 12, 6, 5
    port = free_port()
    api = await start_api(launcher, port)
    tally = Tally()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 50
    done = asyncio.Event()

    async def killer() -> int:
        nonlocal api
        count = 0
        while count < kills and not done.is_set():
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            if done.is_set():
                break
            api.kill()
            count += 1
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            api = await start_api(launcher, port)
        return count

    async with api_client(port) as client:
        kill_task = asyncio.create_task(killer())
        try:
            await asyncio.gather(*(customer(client, tally, i, consumes, deadline=deadline)
                                   for i in range(customers)))
        finally:
            done.set()
            killed = await kill_task
    print(f"seed={seed} kills={killed} statuses={dict(tally.statuses)} "
          f"transport_errors={tally.transport_errors}")
    assert not tally.server_errors, tally.server_errors
    await sync_to_async(check_money)(customers, consumes)


async def test_terminated_connections_are_never_a_500_and_never_a_double_charge(
        launcher: Launcher, own_db: OwnDB, seed: int) -> None:
    rng = random.Random(seed)
    customers, consumes = 10, 8
    port = free_port()
    await start_api(launcher, port)
    tally = Tally()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 50
    done = asyncio.Event()

    async def cutter() -> int:
        # a database restart or failover, again and again for 8 s: every connection of the
        # server, also those in the middle of a statement or of being opened by the pool
        count = 0
        storm_ends = loop.time() + 8
        while not done.is_set() and loop.time() < storm_ends:
            await asyncio.sleep(rng.uniform(0.02, 0.3))
            count += await asyncio.to_thread(terminate, own_db.name, API_APP, POOL_APP)
        return count

    async with api_client(port) as client:
        cut_task = asyncio.create_task(cutter())
        try:
            await asyncio.gather(*(customer(client, tally, i, consumes, deadline=deadline)
                                   for i in range(customers)))
        finally:
            done.set()
            cut = await cut_task
    print(f"seed={seed} terminated={cut} statuses={dict(tally.statuses)}")
    assert cut > 0
    assert not tally.server_errors, tally.server_errors[:5]
    await sync_to_async(check_money)(customers, consumes)


@pytest.mark.parametrize("setting", ["lock_timeout", "statement_timeout"])
async def test_a_request_behind_a_held_row_lock_is_a_503_and_its_retry_charges_once(
        launcher: Launcher, own_db: OwnDB, setting: str) -> None:
    port = free_port()
    await start_api(launcher, port, PGOPTIONS=f"-c {setting}=700")
    tally = Tally()
    who = {"provider": "faults3", "external_id": "locked"}
    async with api_client(port) as client:
        deadline = asyncio.get_running_loop().time() + 40
        await customer(client, tally, 0, 0, deadline=deadline)  # c0: 20 predictions
        who["external_id"] = "c0"
        body = {**who, "product_key": "PREDICTIONS", "idempotency_key": "behind-lock"}
        holder = await asyncio.to_thread(own_db.connect)
        try:
            # an operator's long transaction (or a stuck job) holds c0's batches
            await asyncio.to_thread(holder.execute,
                                    "SELECT id FROM billable_quota_batches WHERE user_id = ("
                                    "SELECT user_id FROM billable_external_identities "
                                    "WHERE external_id = 'c0') FOR UPDATE")
            started = time.monotonic()
            response = await client.post("/wallet/consume", json=body, timeout=30)
            waited = time.monotonic() - started
        finally:
            await asyncio.to_thread(holder.rollback)
            await asyncio.to_thread(holder.close)
        assert response.status_code == 503, (waited, response.status_code, response.text)
        assert response.json()["success"] is False
        status, again = await call(client, tally, "retry", "/wallet/consume", body,
                                   deadline=deadline)
        assert status == 200, again
        status, replay = await call(client, tally, "replay", "/wallet/consume", body,
                                    deadline=deadline)
        assert status == 200 and "idempotent" in replay["data"]["message"], replay
    assert not tally.server_errors, tally.server_errors

    def charged() -> int:
        from billable.models import Transaction
        return Transaction.objects.filter(metadata__idempotency_key="behind-lock",
                                          direction="DEBIT").count()

    assert await sync_to_async(charged)() == 1


async def test_a_request_whose_connection_is_terminated_while_it_waits_is_a_503(
        launcher: Launcher, own_db: OwnDB) -> None:
    """Every connection the request gets is terminated while it waits for a row lock (the
    failover that happens mid-request): the answer is ``503``, never ``500``, and the client's
    retry with the same key charges once."""
    port = free_port()
    await start_api(launcher, port)
    tally = Tally()
    async with api_client(port) as client:
        deadline = asyncio.get_running_loop().time() + 40
        await customer(client, tally, 0, 0, deadline=deadline)
        body = {"provider": "faults3", "external_id": "c0", "product_key": "PREDICTIONS",
                "idempotency_key": "cut-while-waiting"}
        holder = await asyncio.to_thread(own_db.connect)
        cut = 0
        try:
            await asyncio.to_thread(holder.execute,
                                    "SELECT id FROM billable_quota_batches WHERE user_id = ("
                                    "SELECT user_id FROM billable_external_identities "
                                    "WHERE external_id = 'c0') FOR UPDATE")
            request = asyncio.create_task(client.post("/wallet/consume", json=body, timeout=30))
            while not request.done():
                await asyncio.sleep(0.05)
                rows = await asyncio.to_thread(
                    admin_sql, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND application_name = ANY(%s) "
                    "AND wait_event_type = 'Lock'", own_db.name, [API_APP, POOL_APP])
                cut += len(rows)
            response = await request
        finally:
            await asyncio.to_thread(holder.rollback)
            await asyncio.to_thread(holder.close)
        assert cut >= 1
        assert response.status_code == 503, (cut, response.status_code, response.text)
        assert response.json()["data"]["error"] == "database_unavailable"
        status, again = await call(client, tally, "retry", "/wallet/consume", body,
                                   deadline=deadline)
        assert status == 200, again
    assert not tally.server_errors, tally.server_errors

    def charged() -> int:
        from billable.models import Transaction
        return Transaction.objects.filter(metadata__idempotency_key="cut-while-waiting",
                                          direction="DEBIT").count()

    assert await sync_to_async(charged)() == 1
