"""A real Celery worker process runs every billable and bot_kit task once.

Broker and result backend: the local Redis (a dedicated database number and a key prefix unique
to this run, removed afterwards). The worker shares this test's PostgreSQL database; the Bot
API it calls is a loopback fake server (``TELEGRAM_API_SERVER``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from bot_kit.testing import FakeBotAPIServer
from tests.examples.test_scaling import redis_available
from tests.helpers import requires_postgres, stop_process

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/11"

pytestmark = [requires_postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not redis_available(), reason="needs Redis on 127.0.0.1:6379")]


def database_url() -> str:
    params = connection.settings_dict
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    return (f"postgres://{params['USER']}{password}@{params['HOST']}:{params['PORT']}/"
            f"{params['NAME']}")


@pytest.fixture
def telegram() -> Iterator[FakeBotAPIServer]:
    """A fake Bot API server on its own event loop thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = FakeBotAPIServer()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def celery_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    run = uuid.uuid4().hex[:12]
    env = {"CELERY_TEST_REDIS_URL": REDIS_URL, "CELERY_TEST_KEY_PREFIX": f"billable-test-{run}:",
           "CELERY_TEST_QUEUE": f"billable-test-{run}"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env
    from redis import Redis

    client = Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"*billable-test-{run}*"):
        client.delete(key)
    client.close()


@pytest.fixture
def worker(celery_env: dict[str, str], telegram: FakeBotAPIServer) -> Iterator[Any]:
    """A ``celery worker`` process; yields the test's own client app."""
    from tests.celery_app import make_app

    env = {**os.environ, **celery_env, "CELERY_TEST_WORKER": "1",
           "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url(),
           "TELEGRAM_BOT_TOKEN": "123456:worker-test", "TELEGRAM_API_SERVER": telegram.url,
           "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "--pool=solo",
         "--queues", celery_env["CELERY_TEST_QUEUE"], "--without-gossip", "--without-mingle",
         "--without-heartbeat", "--loglevel=WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    app = make_app()
    try:
        yield app
    finally:
        stop_process(process, timeout=20)
        app.close()


def run_task(app: Any, name: str, **kwargs: Any) -> str:
    started = time.monotonic()
    result = app.send_task(name, kwargs=kwargs)
    try:
        return str(result.get(timeout=90))
    finally:
        assert time.monotonic() - started < 90


def star_transaction(charge_id: str, amount: int, *, refund: bool = False) -> dict[str, Any]:
    partner = {"type": "user", "transaction_type": "invoice_payment",
               "user": {"id": 7, "is_bot": False, "first_name": "A"}}
    return {"id": charge_id, "amount": amount, "date": int(time.time()),
            "receiver" if refund else "source": partner}


def test_a_worker_runs_every_task_once(worker: Any, telegram: FakeBotAPIServer,
                                       make_user: Any, make_product: Any) -> None:
    from billable.models import QuotaBatch
    from bot_kit.models import RefundRequest, TelegramPayment
    from bot_kit.payments.refunds import request_refund
    from tests.billable.ledger_support import make_batch

    user, credits = make_user(), make_product("CREDITS")
    stale = make_batch(user, credits, 5, age_days=2, expires_in_days=-1)
    TelegramPayment.objects.create(charge_id="c1", telegram_user_id=7, currency="XTR",
                                   total_amount=50, status="rejected")
    refund = request_refund("c1", reason="test")
    telegram.api.star_transactions = [star_transaction("c1", 50),
                                      star_transaction("c1", 50, refund=True)]

    assert run_task(worker, "billable.expire") == "Expired 1 batch. Released 0 expired holds.\n"
    assert QuotaBatch.objects.get(pk=stale.pk).state == QuotaBatch.State.EXPIRED
    assert run_task(worker, "billable.check_ledger") == "Ledger consistent: 1 batches checked.\n"
    assert f"refund #{refund.pk}: done" in run_task(worker, "bot_kit.refunds")
    assert RefundRequest.objects.get(pk=refund.pk).state == "done"
    [call] = [c for c in telegram.calls if c.method == "refundStarPayment"]
    assert call.params["telegram_payment_charge_id"] == "c1"
    assert "recorded payments match Telegram" in run_task(worker, "bot_kit.reconcile_stars")

