"""A statement's answer lost on the way back (the connection breaks after PostgreSQL committed):
what the API server does next must not apply the operation a second time.

The server (uvicorn + the demo project) talks to PostgreSQL through
:class:`tests.faults3.pgproxy.LossyProxy`, which forwards one marked statement and then closes
that connection instead of delivering the reply.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from tests.faults3.conftest import Launcher, OwnDB, free_port, needs_postgres, wait_port
from tests.faults3.pgproxy import LossyProxy
from tests.faults3.story import Tally, api_client, customer

pytestmark = [needs_postgres, pytest.mark.postgres]


def debits_tagged(tag: str) -> list[tuple[str, int]]:
    from billable.models import Transaction
    return [(t.action_type, t.amount) for t in
            Transaction.objects.filter(direction="DEBIT", metadata__tag=tag)]


def predictions_left() -> int:
    from billable.models import ExternalIdentity
    from billable.services import TransactionService
    user = ExternalIdentity.get_user_by_identity("c0", provider="faults3")
    return TransactionService.get_balance(user.id, "PREDICTIONS")


@pytest.mark.parametrize(("keyed", "lost"), [(False, 1), (True, 1), (False, 2)],
                         ids=["without-key", "with-key", "without-key-retry-lost-too"])
async def test_a_consume_whose_answer_was_lost_is_charged_once(
        launcher: Launcher, own_db: OwnDB, keyed: bool, lost: int) -> None:
    """Lost once: the server retries the same statement and finds its own DEBIT (200), or
    replays the key. Lost twice (the retry's answer too): the outcome is unknown to the server,
    so it answers ``503 database_unavailable`` — and still never writes a second DEBIT."""
    settings = connections["default"].settings_dict
    async with LossyProxy(int(settings["PORT"]), settings["HOST"]) as proxy:
        port = free_port()
        url = own_db.url.replace(f"{settings['HOST']}:{settings['PORT']}",
                                 f"127.0.0.1:{proxy.port}")
        api = launcher.uvicorn(port, app_name="faults3-api", DATABASE_URL=url,
                               PGSSLMODE="disable")
        await asyncio.to_thread(wait_port, port, 30, api)
        tally = Tally()
        async with api_client(port) as client:
            deadline = asyncio.get_running_loop().time() + 40
            await customer(client, tally, 0, 0, deadline=deadline)  # 20 predictions
            tag = f"lost-reply-{'keyed' if keyed else 'bare'}-{lost}"
            body = {"provider": "faults3", "external_id": "c0", "product_key": "PREDICTIONS",
                    "metadata": {"tag": tag}}
            if keyed:
                body["idempotency_key"] = tag
            proxy.arm(tag, times=lost)
            response = await client.post("/wallet/consume", json=body, timeout=30)
            assert proxy.dropped == lost
            if lost == 1:
                assert response.status_code == 200, response.text
            else:
                assert response.status_code == 503, response.text
                assert response.json()["data"]["error"] == "database_unavailable"
            if keyed:  # the documented retry
                again = await client.post("/wallet/consume", json=body, timeout=30)
                assert again.status_code == 200, again.text
    assert await sync_to_async(debits_tagged)(tag) == [("usage", 1)]
    assert await sync_to_async(predictions_left)() == 19


def grant_predictions(telegram_id: int) -> int:
    from billable.models import ExternalIdentity
    from billable.services import TransactionService

    user = ExternalIdentity.get_user_by_identity(str(telegram_id), provider="telegram")
    TransactionService.grant_offer(user.id, "EXCHANGE_PREDICT_10", source="manual_grant")
    return int(user.id)


def gated_outcome(user_id: int) -> tuple[list[str], int]:
    from billable.models import Reservation, Transaction
    from billable.services import TransactionService

    held = list(Reservation.objects.filter(user_id=user_id).values_list("state", flat=True))
    debits = Transaction.objects.filter(user_id=user_id, direction="DEBIT",
                                        action_type="usage").count()
    assert TransactionService.get_balance(user_id, "PREDICTIONS") == 10 - debits
    return held, debits


async def test_a_gated_update_whose_hold_answer_was_lost_still_runs_and_charges_once(
        launcher: Launcher, own_db: OwnDB) -> None:
    """The bot's hold (one statement on the gated fast path) commits, and its answer is lost
    with the connection: the update must still be answered and charged once — not taken for a
    redelivery whose first attempt is "in progress" and dropped."""
    from bot_kit.testing import FakeBotAPIServer, UpdateFactory

    settings = connections["default"].settings_dict
    async with LossyProxy(int(settings["PORT"]), settings["HOST"]) as proxy, \
            FakeBotAPIServer(max_long_poll=0.5) as fake:
        url = own_db.url.replace(f"{settings['HOST']}:{settings['PORT']}",
                                 f"127.0.0.1:{proxy.port}")
        launcher.manage("bot", "runbot", "--lease", "2", "--interval", "0.2",
                        app_name="faults3-bot", DATABASE_URL=url, PGSSLMODE="disable",
                        TELEGRAM_BOT_TOKEN="42:TEST", TELEGRAM_API_SERVER=fake.url)
        factory = UpdateFactory(start_update_id=70_000, first_user_id=990_001)
        person = factory.user()
        fake.put_update(factory.command("start", user=person))
        await fake.wait_for_call("sendMessage", timeout=30)
        user_id = await sync_to_async(grant_predictions)(person.id)
        predict = factory.command("predict", user=person)
        proxy.arm(f"tg:42:{predict.update_id}:PREDICTIONS")
        fake.put_update(predict)
        await fake.wait_for_call("sendMessage", timeout=30, count=2)
        assert "🔮" in str(fake.api.calls_to("sendMessage")[-1].params["text"])
        assert proxy.dropped == 1
        await asyncio.sleep(1.0)  # let the settle commit
    held, debits = await sync_to_async(gated_outcome)(user_id)
    assert (held, debits) == (["COMMITTED"], 1)
