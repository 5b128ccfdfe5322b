"""Two bots in two processes on one PostgreSQL: each polls its own loopback Bot API; wallets
and trials are per bot, and an invoice of bot A paid at bot B is refused and refunded by B."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from bot_kit.callbacks import BuyOffer
from bot_kit.testing import FakeBotAPI, FakeBotAPIServer, UpdateFactory
from tests.bot_kit.multibot.common import BOT_A, BOT_B, TOKEN_A, TOKEN_B, make_catalog
from tests.helpers import requires_postgres

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
WAIT = 60.0  # a cold process imports Django and aiogram first


def database_url() -> str:
    params = connection.settings_dict
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    return (f"postgres://{params['USER']}{password}@{params['HOST']}:{params['PORT']}/"
            f"{params['NAME']}")


@contextmanager
def bot_processes(*bots: tuple[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``(token, api url)`` pairs → one running bot process each (SIGTERM, then kill)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": database_url(), "PYTHONPATH": str(ROOT)}
    processes = [subprocess.Popen(
        [sys.executable, "-m", "tests.bot_kit.multibot.bot_process", token, "per_bot", url],
        cwd=ROOT, env=env) for token, url in bots]
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@sync_to_async
def wallets(telegram_id: int) -> dict[str, tuple[int, int]]:
    from billable.models import ExternalIdentity
    from billable.services import TransactionService

    return {row.provider: (row.user_id, int(TransactionService.get_balance(row.user_id,
                                                                           "CREDITS")))
            for row in ExternalIdentity.objects.filter(external_id=str(telegram_id))}


async def test_two_bot_processes_on_one_postgresql(updates: UpdateFactory) -> None:
    from bot_kit.models import RefundRequest, TelegramPayment

    await sync_to_async(make_catalog)()
    alice = updates.user()
    async with FakeBotAPIServer(FakeBotAPI(bot_id=BOT_A)) as api_a, \
            FakeBotAPIServer(FakeBotAPI(bot_id=BOT_B)) as api_b:
        with bot_processes((TOKEN_A, api_a.url), (TOKEN_B, api_b.url)) as processes:
            # Both processes claim the trial for the same Telegram user at the same moment.
            api_a.put_update(updates.command("trial", user=alice))
            api_b.put_update(updates.command("trial", user=alice))
            granted = await asyncio.gather(api_a.wait_for_call("sendMessage", WAIT),
                                           api_b.wait_for_call("sendMessage", WAIT))
            assert all("3" in call.params["text"] for call in granted)

            api_a.put_update(updates.callback(BuyOffer(sku="STARS_10").pack(), user=alice))
            invoice = (await api_a.wait_for_call("sendInvoice", WAIT)).params
            # Bot B is asked to take bot A's invoice: declined, then refunded once paid.
            api_b.put_update(updates.pre_checkout(payload=invoice["payload"], total_amount=50,
                                                  user=alice))
            answer = (await api_b.wait_for_call("answerPreCheckoutQuery", WAIT)).params
            assert answer["ok"] is False
            api_b.put_update(updates.successful_payment(payload=invoice["payload"],
                                                        total_amount=50, charge_id="at-b",
                                                        user=alice))
            refund = (await api_b.wait_for_call("refundStarPayment", WAIT)).params
            assert refund["telegram_payment_charge_id"] == "at-b"
            # Bot A confirms its own invoice.
            api_a.put_update(updates.pre_checkout(payload=invoice["payload"], total_amount=50,
                                                  user=alice))
            assert (await api_a.wait_for_call("answerPreCheckoutQuery", WAIT)).params["ok"]
            api_a.put_update(updates.successful_payment(payload=invoice["payload"],
                                                        total_amount=50, charge_id="at-a",
                                                        user=alice))
            await api_a.wait_for_call("sendMessage", WAIT, count=2)  # the receipt
            for _ in range(100):  # the refund outcome is written after the Bot API call
                done = await RefundRequest.objects.filter(state="done").acount()
                if done:
                    break
                await asyncio.sleep(0.1)
            assert all(process.poll() is None for process in processes)

    found = await wallets(alice.id)
    assert set(found) == {f"telegram:{BOT_A}", f"telegram:{BOT_B}"}
    assert found[f"telegram:{BOT_A}"][0] != found[f"telegram:{BOT_B}"][0]
    assert found[f"telegram:{BOT_A}"][1] == 13 and found[f"telegram:{BOT_B}"][1] == 3
    payments = {p.charge_id: (p.bot_id, p.status, p.reason)
                async for p in TelegramPayment.objects.all()}
    assert payments == {"at-a": (BOT_A, "confirmed", ""),
                        "at-b": (BOT_B, "refunded", "wrong_bot")}
    assert not api_a.api.calls_to("refundStarPayment")
    assert await RefundRequest.objects.filter(state="done").acount() == 1
