"""Receiving updates: the webhook (aiohttp and the Django view) and polling store before they
acknowledge; forged and malformed posts are refused and stored nowhere."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp.test_utils import TestClient, TestServer
from django.core.management import call_command
from django.test import AsyncClient, override_settings

from bot_kit.checks import check_webhook_secret
from bot_kit.inbox.polling import InboxPoller
from bot_kit.inbox.webhook import (
    SECRET_HEADER,
    WebhookSecretMissing,
    accept,
    webhook_app,
    webhook_secret,
)
from bot_kit.models import InboxUpdate
from bot_kit.runner import run_webhook
from bot_kit.testing import FakeBotAPIServer, UpdateFactory, update_to_json

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "s3cret_-token"


def body(update: Any) -> bytes:
    return json.dumps(update_to_json(update)).encode()


async def stored() -> list[int]:
    return [u async for u in InboxUpdate.objects.order_by("update_id").values_list(
        "update_id", flat=True)]


def test_a_webhook_without_a_secret_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiogram import Dispatcher

    monkeypatch.delenv("TELEGRAM_WEBHOOK_SECRET", raising=False)
    with pytest.raises(WebhookSecretMissing, match="TELEGRAM_WEBHOOK_SECRET"):
        run_webhook(Dispatcher(), base_url="https://bot.example.com")
    with pytest.raises(ValueError, match="1-256"):
        webhook_secret("no spaces allowed")
    assert webhook_secret(allow_no_secret=True) is None
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", SECRET)
    assert webhook_secret() == SECRET


async def test_accept_stores_once_and_refuses_forgeries(updates: UpdateFactory) -> None:
    update = updates.command("start")
    assert await accept(42, body(update), None, secret=SECRET) == 401
    assert await accept(42, body(update), "wrong", secret=SECRET) == 401
    assert await accept(42, b"{not json", SECRET, secret=SECRET) == 400
    assert await accept(42, b'{"update_id": "7"}', SECRET, secret=SECRET) == 400
    assert await stored() == []
    woken: list[bool] = []
    assert await accept(42, body(update), SECRET, secret=SECRET,
                        on_stored=lambda: woken.append(True)) == 200
    assert await accept(42, body(update), SECRET, secret=SECRET) == 200  # a redelivery
    assert await stored() == [update.update_id] and woken == [True]


async def test_accept_answers_503_while_the_inbox_cannot_be_written(
        updates: UpdateFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any, **kwargs: Any) -> int:
        from django.db.utils import OperationalError

        raise OperationalError("the database is restarting")

    monkeypatch.setattr("bot_kit.inbox.store.store_many", down)
    assert await accept(42, body(updates.command("start")), SECRET, secret=SECRET) == 503


async def test_aiohttp_webhook_app_answers_401_and_stores_genuine_updates(
        updates: UpdateFactory) -> None:
    app = webhook_app(42, path="/telegram/webhook", secret=SECRET)
    update = updates.command("start")
    async with TestClient(TestServer(app)) as client:
        refused = await client.post("/telegram/webhook", data=body(update))
        accepted = await client.post("/telegram/webhook", data=body(update),
                                     headers={SECRET_HEADER: SECRET})
        health = await client.get("/healthz")
        checks = (await health.json())["checks"]
    assert (refused.status, accepted.status, health.status) == (401, 200, 200)
    assert checks["database"] == "ok" and checks["inbox_oldest_pending_seconds"] >= 0
    assert await stored() == [update.update_id]


@override_settings(ROOT_URLCONF="tests.bot_kit.inbox.urls")
async def test_django_view_serves_the_webhook_next_to_the_api(
        updates: UpdateFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    client, update = AsyncClient(), updates.command("start")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "4242:TOKEN")
    monkeypatch.delenv("TELEGRAM_WEBHOOK_SECRET", raising=False)
    unconfigured = await client.post("/telegram/webhook/", body(update),
                                     content_type="application/json")
    assert unconfigured.status_code == 503  # fail closed: Telegram keeps the update
    assert [w.id for w in check_webhook_secret()] == ["bot_kit.W001"]

    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", SECRET)
    assert check_webhook_secret() == []
    forged = await client.post("/telegram/webhook/", body(update),
                               content_type="application/json")
    genuine = await client.post("/telegram/webhook/", body(update),
                                content_type="application/json",
                                headers={SECRET_HEADER: SECRET})
    assert (forged.status_code, genuine.status_code) == (401, 200)
    assert [(r.bot_id, r.update_id) async for r in InboxUpdate.objects.all()] == [
        (4242, update.update_id)]
    assert (await client.get("/telegram/webhook/")).status_code == 405
    health = await client.get("/api/v1/billing/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"


async def test_polling_commits_a_batch_before_confirming_its_offset(
        updates: UpdateFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeBotAPIServer() as server:
        bot = Bot("42:TEST", session=AiohttpSession(api=TelegramAPIServer.from_base(server.url)))
        poller = InboxPoller(bot, timeout=0)
        first, second = updates.command("start"), updates.command("balance")
        server.put_update(first)
        server.put_update(second)
        await asyncio.sleep(0)

        def broken(*args: Any, **kwargs: Any) -> int:
            from django.db.utils import OperationalError

            raise OperationalError("database down")

        monkeypatch.setattr("bot_kit.inbox.store.store_many", broken)
        with pytest.raises(Exception, match="database down"):
            await poller.poll_once()
        assert poller.offset is None  # nothing confirmed: Telegram keeps both

        monkeypatch.undo()
        assert await poller.poll_once() == 2
        assert poller.offset == second.update_id + 1
        assert await poller.poll_once() == 0  # this call confirms the offset
        assert server.confirmed_offset == second.update_id + 1
        await bot.session.close()
    assert await stored() == [first.update_id, second.update_id]


def test_readiness_fails_when_the_database_does_not_answer(client: Any,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    from billable import health

    def down() -> None:
        raise RuntimeError("password=hunter2 host=db.internal")

    monkeypatch.setitem(health._PROBES, "database", health.Probe("database", down))
    response = client.get("/api/v1/billing/health")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "fail"
    assert "hunter2" not in response.content.decode()  # nothing but ok/fail and numbers


def test_runbot_needs_a_dispatcher() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="BOT_KIT_DISPATCHER"):
        call_command("runbot")


@override_settings(ROOT_URLCONF="tests.bot_kit.inbox.urls")
async def test_the_webhook_view_serves_a_host_with_atomic_requests(
        updates: UpdateFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Django refuses ``ATOMIC_REQUESTS`` for async views (a 500, and Telegram retries forever);
    the kit's view is exempt: the inbox row commits on its own."""
    from django.db import connections

    for alias in connections.settings:
        monkeypatch.setitem(connections.settings[alias], "ATOMIC_REQUESTS", True)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "4242:TOKEN")
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", SECRET)
    update = updates.command("start")

    reply = await AsyncClient().post("/telegram/webhook/", body(update),
                                     content_type="application/json",
                                     headers={SECRET_HEADER: SECRET})

    assert reply.status_code == 200
    assert await stored() == [update.update_id]
