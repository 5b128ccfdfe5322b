"""Refund faults: two refund workers against a Bot API slower than their lease.

Must show 6 of issue 11: the lease is renewed while ``refundStarPayment`` is in flight, so
exactly one call per charge is made however slow Telegram answers.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from asgiref.sync import sync_to_async

from bot_kit.testing import FakeBotAPIServer
from tests.bot_kit.faults.conftest import Spawner
from tests.bot_kit.faults.story import wait_until
from tests.helpers import requires_postgres

pytestmark = [requires_postgres, pytest.mark.postgres]
CHARGES = [f"stxSLOW{n}" for n in range(3)]


def queue() -> None:
    from bot_kit.models import TelegramPayment
    from bot_kit.payments.refunds import request_refund

    for index, charge in enumerate(CHARGES):
        TelegramPayment.objects.create(charge_id=charge, telegram_user_id=870_000 + index,
                                       currency="XTR", total_amount=50, status="rejected")
        request_refund(charge, reason="fault test")


def done() -> int:
    from bot_kit.models import RefundRequest

    return RefundRequest.objects.filter(state="done").count()


async def test_two_refund_workers_call_telegram_once_per_charge_when_it_is_slow(
        spawn: Spawner, telegram: FakeBotAPIServer) -> None:
    await sync_to_async(queue)()
    telegram.api.slow("refundStarPayment", 1.5)  # lease below: 0.5 s, renewed every 0.17 s
    workers = [spawn.start("billable_refunds", "--loop", "--interval", "0.1", "--lease", "0.5",
                           telegram_url=telegram.url) for _ in range(2)]
    await wait_until(lambda: done() == len(CHARGES), timeout=60)

    calls = Counter(c.params["telegram_payment_charge_id"]
                    for c in telegram.api.calls_to("refundStarPayment"))
    assert calls == dict.fromkeys(CHARGES, 1)
    for worker in workers:
        assert await asyncio.to_thread(worker.stop) == 0  # SIGTERM: the loop ends cleanly
        assert "Traceback" not in worker.output()
