"""A Celery worker (RabbitMQ broker, ``acks_late``) SIGKILLed while the refund task is calling
Telegram; the broker hands the task to the restarted worker and beat keeps sending it.

Promise (docs/operations.md): every job is safe to run twice at the same time and safe to skip.
After the restarts every charge is refunded once at Telegram (a repeated call is answered
``CHARGE_ALREADY_REFUNDED``), every order refunded and revoked once, and the ledger check passes.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import uuid
from collections import Counter
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from bot_kit.testing import FakeAPIError, FakeBotAPIServer
from tests.faults3.conftest import Launcher, OwnDB, Proc, needs_postgres
from tests.faults3.test_job_crashes import (
    buy_in_process,
    check_refunded,
    queue_refunds,
    refunds_done,
)

pytestmark = [needs_postgres, pytest.mark.postgres]

BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def rabbitmq_available() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5672), 0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not rabbitmq_available(), reason="needs RabbitMQ on 127.0.0.1:5672")
async def test_celery_worker_killed_mid_refund_task_refunds_each_charge_once(
        launcher: Launcher, own_db: OwnDB, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    users = 6
    charges = await buy_in_process(users)
    await sync_to_async(queue_refunds)(charges)
    queue = f"faults3-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("FAULTS3_BROKER_URL", BROKER)
    monkeypatch.setenv("FAULTS3_QUEUE", queue)
    from tests.faults3.celery_app import make_app

    app = make_app()
    refunded_at_telegram: Counter[str] = Counter()

    def refund_star_payment(params: dict[str, Any]) -> bool:
        charge = str(params["telegram_payment_charge_id"])
        refunded_at_telegram[charge] += 1
        if refunded_at_telegram[charge] > 1:
            raise FakeAPIError(400, "Bad Request: CHARGE_ALREADY_REFUNDED")
        return True

    async with FakeBotAPIServer(max_long_poll=0.5) as fake:
        fake.api.respond("refundStarPayment", refund_star_payment)
        fake.api.slow("refundStarPayment", 0.6)
        env = {"TELEGRAM_BOT_TOKEN": "42:TEST", "TELEGRAM_API_SERVER": fake.url,
               "FAULTS3_BROKER_URL": BROKER, "FAULTS3_QUEUE": queue,
               "FAULTS3_CELERY_WORKER": "1"}

        def start() -> Proc:
            return launcher.start("celery", [
                sys.executable, "-m", "celery", "-A", "tests.faults3.celery_app", "worker",
                "--pool", "solo", "--loglevel", "INFO", "-Q", queue, "--without-gossip",
                "--without-mingle", "--without-heartbeat"], app_name="faults3-celery", **env)

        def beat() -> None:  # what celery beat does every 30 s, with a short lease
            app.send_task("bot_kit.refunds", kwargs={"limit": 50, "lease": 1.0}, queue=queue)

        worker = start()
        await asyncio.to_thread(beat)
        kills = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 50
        try:
            while await sync_to_async(refunds_done)() < users:
                assert loop.time() < deadline, worker.output()[-3000:]
                calls = len(fake.api.calls_to("refundStarPayment"))
                try:
                    await fake.wait_for_call("refundStarPayment", timeout=3, count=calls + 1)
                except TimeoutError:
                    await asyncio.to_thread(beat)
                    continue
                if kills < 3:
                    await asyncio.sleep(rng.uniform(0.0, 0.5))
                    worker.kill()  # mid-task: the broker redelivers it (acks_late)
                    kills += 1
                    worker = start()
        finally:
            worker.close()
            await asyncio.to_thread(_purge, app, queue)
    print(f"seed={seed} kills={kills} telegram_calls={sum(refunded_at_telegram.values())}")
    assert "Traceback" not in worker.output(), worker.output()[-3000:]
    assert set(refunded_at_telegram) == set(charges.values())
    await sync_to_async(check_refunded)(charges)


def _purge(app: Any, queue: str) -> None:
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        channel.queue_delete(queue)
    app.close()  # the producer pool's broker connections
    os.environ.pop("FAULTS3_CELERY_WORKER", None)
