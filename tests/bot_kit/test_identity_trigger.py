"""A cached Telegram user whose identity is moved or deleted behind Django's back — a queryset
``update()`` or raw SQL on another connection — is evicted by the identity table's trigger
notice, and the next update charges the account the identity points to now. A listener whose
database lacks the triggers never trusts its cache."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from aiogram import F, Router
from aiogram.types import Message
from asgiref.sync import sync_to_async
from django.db import connection

from billable.ledger import sql
from billable.models import ExternalIdentity
from bot_kit.billing import abalance
from bot_kit.config import BillingConfig
from bot_kit.context import BillingContext
from bot_kit.middlewares import identity as identity_module
from bot_kit.middlewares.identity import IdentityCache, IdentityListener
from tests.bot_kit.identity_harness import Calls, until
from tests.helpers import requires_postgres, run_in_threads

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]

TABLE = ExternalIdentity._meta.db_table


def spending_router(charged: list[int]) -> Router:
    """``spend`` consumes one ``PREDICTIONS`` from the update's account and records it."""
    router = Router()

    @router.message(F.text == "spend")
    async def spend(message: Message, billing: BillingContext) -> None:
        if (await billing.consume("PREDICTIONS"))["success"]:
            charged.append(billing.user_id)

    return router


async def elsewhere(work: Callable[[], Any]) -> None:
    """Run ``work`` on another thread and its own connection (committed when it returns)."""
    [result] = await sync_to_async(run_in_threads)(1, lambda _: work())
    if isinstance(result, BaseException):
        raise result


def by_queryset(identity_id: int, user_id: int) -> None:
    ExternalIdentity.objects.filter(pk=identity_id).update(user=user_id)


def by_raw_sql(identity_id: int, user_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'UPDATE "{TABLE}" SET "user_id" = %s WHERE "id" = %s',
                       [user_id, identity_id])


@pytest.mark.parametrize("move", [by_queryset, by_raw_sql], ids=["queryset", "raw-sql"])
async def test_move_behind_django_evicts_and_the_next_update_charges_the_new_account(
        move, make_dp, bot, updates, make_user, catalog, grant, listener, monkeypatch):
    calls = Calls(monkeypatch)
    charged: list[int] = []
    cache = IdentityCache()
    dp = make_dp(BillingConfig(), spending_router(charged), cache=cache)
    tg = updates.user()
    await dp.feed_update(bot, updates.message("spend", user=tg))  # first contact: no quota yet
    identity = await ExternalIdentity.objects.aget(provider="telegram", external_id=str(tg.id))
    old, new = identity.user_id, (await sync_to_async(make_user)()).pk
    for account in (old, new):
        await grant(account, catalog["pack"])
    await dp.feed_update(bot, updates.message("spend", user=tg))
    assert charged == [old] and calls.owner == 0  # trusted from the cache: no query

    await elsewhere(lambda: move(identity.pk, new))
    await until(lambda: cache.get(str(tg.id)) is None, "the trigger's notice")
    await dp.feed_update(bot, updates.message("spend", user=tg))

    assert charged == [old, new]
    assert listener.payloads == [
        f'{{"users":["{old}","{new}"],"identities":[["telegram","{tg.id}"]]}}']
    assert [await abalance(a, "PREDICTIONS") for a in (old, new)] == [9, 9]


async def test_row_deleted_by_raw_sql_evicts_and_the_next_update_starts_afresh(
        make_dp, bot, updates, catalog, grant, listener):
    charged: list[int] = []
    cache = IdentityCache()
    dp = make_dp(BillingConfig(), spending_router(charged), cache=cache)
    tg = updates.user()
    await dp.feed_update(bot, updates.message("spend", user=tg))
    identity = await ExternalIdentity.objects.aget(provider="telegram", external_id=str(tg.id))
    old = identity.user_id
    await grant(old, catalog["pack"])

    def delete() -> None:
        with connection.cursor() as cursor:
            cursor.execute(f'DELETE FROM "{TABLE}" WHERE "id" = %s', [identity.pk])

    await elsewhere(delete)
    await until(lambda: cache.get(str(tg.id)) is None, "the trigger's notice")
    await dp.feed_update(bot, updates.message("spend", user=tg))

    relinked = await ExternalIdentity.objects.aget(provider="telegram", external_id=str(tg.id))
    assert relinked.user_id != old  # a new first contact: a new account, with nothing to spend
    assert charged == []
    assert await abalance(old, "PREDICTIONS") == 10


async def switch_trigger(state: str) -> None:
    @sync_to_async
    def run() -> None:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE "{TABLE}" {state} TRIGGER "{sql.IDENTITY_TRIGGERS[0]}"')

    await run()


async def test_listener_without_the_triggers_stays_away_until_they_are_back(
        monkeypatch, caplog):
    fresh = IdentityListener(retry_after=0.05, max_retry_after=0.1)
    monkeypatch.setattr(identity_module, "LISTENER", fresh)
    await switch_trigger("DISABLE")
    try:
        with caplog.at_level(logging.WARNING, logger="bot_kit.identity"):
            await fresh.start()
            assert not await fresh.wait_live(1.0)  # no notices: every update would query
            assert "identity change triggers are missing or disabled" in caplog.text
            # ~10 attempts failed, one warning for the whole outage
            down = [r for r in caplog.records if "unavailable" in r.getMessage()]
            assert len(down) == 1, caplog.text
            await switch_trigger("ENABLE")
            assert await fresh.wait_live(5.0)
        back = [r.getMessage() for r in caplog.records if "is back after" in r.getMessage()]
        assert len(back) == 1, caplog.text
    finally:
        await switch_trigger("ENABLE")
        await fresh.stop()
