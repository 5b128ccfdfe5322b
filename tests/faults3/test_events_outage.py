"""``billable_deliver_events --loop`` (the service that replaces the periodic task where events
must leave within seconds, docs/operations.md) through a database failover.

SPEC §8/§10: long-lived processes recycle unusable database connections by themselves. The
loop's connection is terminated (a PostgreSQL restart or failover for that process); events
recorded afterwards must still leave, from the same process, each once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web
from asgiref.sync import sync_to_async

from tests.faults3.conftest import Launcher, OwnDB, free_port, needs_postgres, terminate

pytestmark = [needs_postgres, pytest.mark.postgres]

APP = "faults3-events"


def make_endpoint(url: str) -> None:
    from billable.models import EventEndpoint

    EventEndpoint.objects.create(name="faults3", url=url, event_types=["payment.confirmed"])


def pay_orders(first: int, count: int) -> list[int]:
    from django.contrib.auth import get_user_model

    from billable.services import OrderService

    paid = []
    for n in range(first, first + count):
        user = get_user_model().objects.create(username=f"faults3-events-{n}")
        order = OrderService.create_order(user.id, [{"sku": "STARS_PACK_S", "quantity": 1}])
        OrderService.process_payment(order.id, payment_id=f"faults3-ev-{n}",
                                     payment_method="faults3")
        paid.append(order.id)
    return paid


async def wait_until(predicate: Any, timeout: float, what: str) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_event_loop_survives_terminated_connections_and_delivers_each_event(
        launcher: Launcher, own_db: OwnDB) -> None:
    received: list[str] = []
    posting = asyncio.Event()
    slow = {"on": False}

    async def receive(request: web.Request) -> web.Response:
        event_id = json.loads(await request.read())["id"]
        if slow["on"]:  # the worker waits for this answer while its connection is cut
            slow["on"] = False
            posting.set()
            await asyncio.sleep(1.0)
        received.append(event_id)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/events", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await sync_to_async(make_endpoint)(f"http://127.0.0.1:{port}/events")
        worker = launcher.manage("events", "billable_deliver_events", "--loop", "--interval",
                                 "0.2", "--lease", "3", "--timeout", "2", app_name=APP)
        await sync_to_async(pay_orders)(0, 3)
        await wait_until(lambda: len(set(received)) >= 3, 30, "the first events")
        for round_ in range(3):  # three failovers, each followed by new payments
            assert await asyncio.to_thread(terminate, own_db.name, APP) >= 1
            await asyncio.sleep(0.3)
            await sync_to_async(pay_orders)(10 * (round_ + 1), 3)
            await wait_until(lambda r=round_: len(set(received)) >= 6 + 3 * r or
                             not worker.alive, 30, "events after the failover")
            assert worker.alive, worker.output()[-3000:]
        # a failover in the middle of a pass: the POST is in flight, its outcome cannot be
        # written; the loop survives, and the delivery is made again after its lease
        slow["on"] = True
        await sync_to_async(pay_orders)(100, 1)
        await asyncio.wait_for(posting.wait(), 30)
        assert await asyncio.to_thread(terminate, own_db.name, APP) >= 1
        await wait_until(lambda: (len(set(received)) >= 13 and "database is back" in
                         worker.output()) or not worker.alive, 30, "the cut delivery")
        assert worker.alive, worker.output()[-3000:]
    finally:
        await runner.cleanup()
    # at least once, with stable ids: 13 events, the cut one possibly twice
    assert len(set(received)) == 13 and len(received) <= 14, received
    assert "Traceback" not in worker.output(), worker.output()[-3000:]
    # one warning per outage (at most one per failover), never one per failed pass
    assert 1 <= worker.output().count("retrying until the database is back") <= 4
