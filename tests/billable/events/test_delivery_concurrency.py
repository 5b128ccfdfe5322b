"""Workers on PostgreSQL: two at once never deliver one event concurrently (lease + SKIP
LOCKED), and a worker killed with SIGKILL mid-delivery loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from billable.events import Deliverer
from billable.models import EventDelivery, OutboxEvent
from billable.services import OrderService
from tests.billable.events.receiver import Receiver, running
from tests.helpers import requires_postgres, run_in_threads

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[3]
SECRET = "whsec_concurrency"


def database_url() -> str:
    params = connection.settings_dict
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    return (f"postgres://{params['USER']}{password}@{params['HOST']}:{params['PORT']}/"
            f"{params['NAME']}")


def pay_many(make_user, make_product, make_offer, count: int) -> None:  # type: ignore[no-untyped-def]
    tokens = make_product("TOKENS")
    offer = make_offer("PACK", items=[(tokens, 1)], price="1")
    for index in range(count):
        order = OrderService.create_order(make_user().id, [{"sku": offer.sku}])
        OrderService.process_payment(order.id, f"PAY-{index}")


def test_two_workers_never_deliver_one_event_twice(make_user, make_product, make_offer,
                                                    make_endpoint):
    with running(Receiver(SECRET, hold=0.05)) as receiver:
        make_endpoint(receiver.url, secret=SECRET, types=["payment.confirmed"])
        pay_many(make_user, make_product, make_offer, 12)
        results = run_in_threads(4, lambda i: Deliverer().run_once())

    assert not [r for r in results if isinstance(r, BaseException)]
    assert sum(sum(r.values()) for r in results) == 12
    ids = [r["id"] for r in receiver.requests]
    assert len(ids) == len(set(ids)) == 12  # each event POSTed exactly once
    assert set(receiver.max_in_flight.values()) == {1}
    assert EventDelivery.objects.filter(state="delivered").count() == 12


def worker(*, lease: float, timeout: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": database_url(), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "django", "billable_deliver_events", "--loop", "--interval", "0.2",
         "--lease", str(lease), "--timeout", str(timeout)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(condition, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_sigkill_mid_delivery_loses_nothing(make_user, make_product, make_offer, make_endpoint):
    with running(Receiver(SECRET, hold=1.0)) as receiver:
        make_endpoint(receiver.url, secret=SECRET, types=["payment.confirmed"])
        pay_many(make_user, make_product, make_offer, 4)
        first = worker(lease=3, timeout=2)
        try:
            assert wait_for(lambda: receiver.in_flight > 0, 30), "worker never delivered"
            os.kill(first.pid, signal.SIGKILL)
        finally:
            first.wait(10)
        assert first.returncode == -signal.SIGKILL
        killed_in_flight = receiver.requests[-1]["id"]
        row = EventDelivery.objects.get(event__event_id=killed_in_flight)
        assert row.state == "pending" and row.lease_token  # leased, outcome never recorded

        second = worker(lease=3, timeout=2)
        try:
            assert wait_for(lambda: not EventDelivery.objects.exclude(
                state="delivered").exists(), 60), "not everything was delivered"
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)

    written = {str(e) for e in OutboxEvent.objects.values_list("event_id", flat=True)}
    assert len(written) == 4 and set(receiver.handled) == written
    assert len(receiver.handled) == 4  # the receiver handled each id once
    ids = [r["id"] for r in receiver.requests]
    assert ids.count(killed_in_flight) >= 2  # at-least-once: the killed attempt was repeated
