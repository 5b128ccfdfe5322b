"""The documented webhook deployments under SIGKILL: "one uvicorn for API, admin and webhook"
(the Django view + ``runbot --workers-only``) and ``runbot --webhook``.

Telegram posts updates to the demo project's Django view (``POST /telegram/webhook/`` under
uvicorn) and ``manage.py runbot --workers-only`` drains the inbox (docs/delivery.md). While
Stars payments (pre-checkout, then ``successful_payment``) and gated ``/predict`` commands stream
in, the test SIGKILLs the web server or the worker at random moments and restarts it; like
Telegram, the sender posts an update again until it is acknowledged with a 2xx, and now and
then posts an acknowledged one again; now and then every database connection of both processes is
terminated (a failover). After quiescence: every charge confirmed once (order paid
once, credits granted once, at most one receipt), every gated update charged once, no refund,
no dead update, and the ledger check passes.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import httpx
import pytest
from aiogram.types import Update
from asgiref.sync import sync_to_async
from django.core.management import call_command

from bot_kit.testing import FakeBotAPIServer, UpdateFactory
from bot_kit.testing.updates import update_to_json
from tests.faults3.conftest import (
    WEBHOOK_SECRET,
    Launcher,
    OwnDB,
    Proc,
    free_port,
    needs_postgres,
    terminate,
    wait_port,
)

pytestmark = [needs_postgres, pytest.mark.postgres]

BOT_ENV = {"TELEGRAM_BOT_TOKEN": "42:TEST"}
PREDICTS = 8
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: The async pool of a process names its connections itself (billable.ledger.apool).
POOL_APP = "billable-gated-fast-path"


class Telegram:
    """Posts updates to the webhook until one is acknowledged, as Telegram does."""

    def __init__(self, port: int, path: str) -> None:
        self.url = f"http://127.0.0.1:{port}{path}"
        self.client = httpx.AsyncClient(timeout=10)
        self.statuses: Counter[int] = Counter()
        self.transport_errors = 0

    async def post(self, update: Update) -> None:
        body = update_to_json(update)
        for _ in range(600):
            try:
                response = await self.client.post(self.url, json=body,
                                                  headers={SECRET_HEADER: WEBHOOK_SECRET})
            except httpx.TransportError:
                self.transport_errors += 1
                await asyncio.sleep(0.1)
                continue
            self.statuses[response.status_code] += 1
            if 200 <= response.status_code < 300:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"update {update.update_id} was never acknowledged")


def calls_for(telegram: FakeBotAPIServer, method: str, chat_id: int) -> list[Any]:
    return [c for c in telegram.api.calls_to(method)
            if str(c.params.get("chat_id")) == str(chat_id)]


async def wait_for(predicate: Any, timeout: float, what: str) -> Any:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        found = predicate()
        if asyncio.iscoroutine(found):
            found = await found
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def buy_button(call: Any) -> str:
    markup = call.params["reply_markup"]
    buttons = [b for row in markup["inline_keyboard"] for b in row if b.get("callback_data")]
    return str(buttons[0]["callback_data"])


def give_predictions(telegram_ids: list[int]) -> None:
    """20 predictions each (two exchange offers granted), so every /predict must be charged."""
    from billable.models import ExternalIdentity, Offer
    from billable.services import TransactionService

    offer = Offer.objects.get(sku="EXCHANGE_PREDICT_10")
    for tg in telegram_ids:
        user = ExternalIdentity.get_user_by_identity(str(tg), provider="telegram")
        for n in (1, 2):
            TransactionService.grant_offer(user.id, offer, source="manual_grant",
                                           idempotency_key=f"faults3-gift-{tg}-{n}")


def inbox_pending() -> int:
    from bot_kit.models import InboxUpdate
    return InboxUpdate.objects.exclude(state="done").count()


def confirmed_charges() -> set[str]:
    from bot_kit.models import TelegramPayment
    return set(TelegramPayment.objects.filter(status="confirmed")
               .values_list("charge_id", flat=True))


def check_money(telegram_ids: list[int], charges: dict[int, str],
                predicts: dict[int, list[int]]) -> None:
    from billable.models import ExternalIdentity, Order, QuotaBatch, Transaction
    from billable.services import TransactionService
    from bot_kit.models import InboxUpdate, TelegramPayment

    assert not InboxUpdate.objects.filter(state="dead").exists()
    for tg in telegram_ids:
        user = ExternalIdentity.get_user_by_identity(str(tg), provider="telegram")
        payments = list(TelegramPayment.objects.filter(telegram_user_id=tg))
        assert [(p.charge_id, p.status) for p in payments] == [(charges[tg], "confirmed")]
        paid = list(Order.objects.filter(user_id=user.id, status="paid"))
        assert [o.payment_id for o in paid] == [charges[tg]], paid
        assert QuotaBatch.objects.filter(user_id=user.id, product__product_key="CREDITS",
                                         order_item__order__in=paid).count() == 1
        assert TransactionService.get_balance(user.id, "CREDITS") == 100
        usage = Counter(str(t.metadata.get("idempotency_key") or t.object_id)
                        for t in Transaction.objects.filter(user_id=user.id, direction="DEBIT",
                                                            action_type="usage"))
        assert len(usage) == len(predicts[tg]) and set(usage.values()) == {1}, usage
        assert TransactionService.get_balance(user.id, "PREDICTIONS") == 20 - len(predicts[tg])
    call_command("billable_check_ledger", verbosity=0)


@pytest.mark.parametrize("mode", ["django-view", "runbot-webhook"])
async def test_webhook_receivers_and_inbox_workers_killed_at_random_lose_and_double_nothing(
        launcher: Launcher, own_db: OwnDB, seed: int, mode: str) -> None:
    """``django-view``: uvicorn (the view) + ``runbot --workers-only``, killed separately;
    ``runbot-webhook``: ``runbot --webhook`` (aiohttp receiver and workers in one process)."""
    rng = random.Random(seed)
    users = 6
    async with FakeBotAPIServer(max_long_poll=0.5) as fake:
        env = {**BOT_ENV, "TELEGRAM_API_SERVER": fake.url}
        port = free_port()
        procs: dict[str, Proc] = {}

        async def start(name: str) -> None:
            if mode == "runbot-webhook":
                procs[name] = launcher.manage(
                    "bot", "runbot", "--webhook", f"http://127.0.0.1:{port}", "--port", str(port),
                    "--lease", "2", "--interval", "0.2", "--no-refund-worker",
                    app_name="faults3-web", **env)
                await asyncio.to_thread(wait_port, port, 30, procs[name])
            elif name == "web":
                procs["web"] = launcher.uvicorn(port, app_name="faults3-web", **env)
                await asyncio.to_thread(wait_port, port, 30, procs["web"])
            else:
                procs["worker"] = launcher.manage(
                    "worker", "runbot", "--workers-only", "--lease", "2", "--interval", "0.2",
                    "--no-refund-worker", app_name="faults3-worker", **env)

        victims = ["web", "worker", "database"] if mode == "django-view" else ["web", "database"]
        for name in victims[:-1]:
            await start(name)
        path = "/telegram/webhook/" if mode == "django-view" else "/telegram/webhook"
        tg = Telegram(port, path)
        factory = UpdateFactory(start_update_id=50_000, first_user_id=700_001)
        people = [factory.user() for _ in range(users)]
        ids = [p.id for p in people]

        # Setup, no faults: each user opens /buy and taps the first pack -> an invoice.
        invoices: dict[int, Any] = {}

        async def open_invoice(person: Any) -> None:
            await tg.post(factory.command("buy", user=person))
            menu = await wait_for(lambda: [c for c in calls_for(fake, "sendMessage", person.id)
                                           if "reply_markup" in c.params], 30, "/buy")
            await tg.post(factory.callback(buy_button(menu[-1]), user=person))
            invoices[person.id] = (await wait_for(
                lambda: calls_for(fake, "sendInvoice", person.id), 30, "invoice"))[-1]

        await asyncio.gather(*(open_invoice(p) for p in people))
        await sync_to_async(give_predictions)(ids)

        charges = {p.id: f"stxFAULTS3{seed:06d}{p.id}" for p in people}
        predicts: dict[int, list[int]] = {p.id: [] for p in people}
        acknowledged: list[Update] = []
        stream_done = asyncio.Event()
        kills: Counter[str] = Counter()

        async def pay(person: Any) -> None:
            invoice = invoices[person.id].params
            amount = int(invoice["prices"][0]["amount"])
            for _attempt in range(6):  # the user taps "Pay" again if Telegram gave up
                query = factory.pre_checkout(payload=invoice["payload"], total_amount=amount,
                                             user=person)
                await tg.post(query)
                qid = query.pre_checkout_query.id  # type: ignore[union-attr]
                try:
                    answer = await wait_for(
                        lambda q=qid: [c for c in fake.api.calls_to("answerPreCheckoutQuery")
                                       if c.params["pre_checkout_query_id"] == q], 10,
                        "pre-checkout answer")
                except AssertionError:
                    continue  # Telegram's 10 s deadline passed: no charge
                assert answer[-1].params["ok"] in (True, "true", "True"), answer[-1].params
                paid = factory.successful_payment(payload=invoice["payload"],
                                                  total_amount=amount,
                                                  charge_id=charges[person.id], user=person)
                await tg.post(paid)
                acknowledged.append(paid)
                return
            raise AssertionError(f"user {person.id} could never pay")

        async def gated(person: Any) -> None:
            for _ in range(PREDICTS):
                await asyncio.sleep(rng.uniform(0, 1.5))
                update = factory.command("predict", user=person)
                predicts[person.id].append(update.update_id)
                await tg.post(update)
                acknowledged.append(update)

        async def killer() -> None:
            while not stream_done.is_set():
                await asyncio.sleep(rng.uniform(0.3, 1.2))
                victim = rng.choice(victims)
                if victim == "database":  # a failover: both processes lose their connections
                    kills[victim] += await asyncio.to_thread(
                        terminate, own_db.name, "faults3-web", "faults3-worker", POOL_APP)
                    continue
                procs[victim].kill()
                kills[victim] += 1
                await asyncio.sleep(rng.uniform(0, 0.4))
                await start(victim)

        async def redeliver() -> None:  # Telegram sometimes delivers an update again
            while not stream_done.is_set():
                await asyncio.sleep(rng.uniform(0.2, 0.8))
                if acknowledged:
                    await tg.post(rng.choice(acknowledged))

        faults = [asyncio.create_task(killer()), asyncio.create_task(redeliver())]
        try:
            await asyncio.wait_for(asyncio.gather(*(pay(p) for p in people),
                                                  *(gated(p) for p in people)),
                                   120)  # generous: process restarts are slow on a loaded machine
        finally:
            stream_done.set()
            await asyncio.gather(*faults)
        def quiet() -> bool:
            return inbox_pending() == 0 and len(confirmed_charges()) == users

        await wait_for(sync_to_async(quiet), 90, "quiescence")
        await tg.client.aclose()
        print(f"seed={seed} kills={dict(kills)} statuses={dict(tg.statuses)} "
              f"transport_errors={tg.transport_errors} updates={factory.next_update_id() - 50_000}")

        receipts = Counter(charge for c in fake.api.calls_to("sendMessage")
                           for charge in charges.values() if charge in str(c.params.get("text")))
        assert set(receipts.values()) <= {1}, receipts  # never a second receipt for a charge
        assert not fake.api.calls_to("refundStarPayment")
        await sync_to_async(check_money)(ids, charges, predicts)
