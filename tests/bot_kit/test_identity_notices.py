"""Identity without a round trip: cached users are trusted with no query while the listener is
connected; merges and identity moves committed in another process evict them (LISTEN/NOTIFY),
and whenever the listener is away the middleware queries per update as before."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from billable.models import ExternalIdentity
from bot_kit import billing
from bot_kit.config import BillingConfig
from bot_kit.middlewares.identity import IdentityCache, IdentityListener
from tests.bot_kit.identity_harness import Calls, recording_router, until
from tests.helpers import requires_postgres

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    params = connection.settings_dict
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    return (f"postgres://{params['USER']}{password}@{params['HOST']}:{params['PORT']}/"
            f"{params['NAME']}")


async def other_process(*args: str) -> None:
    """Run ``tests.bot_kit.identity_process`` in a new process against the test database."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": database_url(), "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bot_kit.identity_process", *args, cwd=ROOT, env=env)
    assert await asyncio.wait_for(process.wait(), 60) == 0


async def test_cached_user_costs_no_query_and_no_thread_hop(make_dp, bot, updates, listener,
                                                            monkeypatch):
    calls = Calls(monkeypatch)
    seen: list[int] = []
    dp = make_dp(BillingConfig(), recording_router(seen))
    tg = updates.user()
    await dp.feed_update(bot, updates.message("who", user=tg))
    assert (calls.resolve, calls.owner) == (1, 0)

    for _ in range(3):
        await dp.feed_update(bot, updates.message("who", user=tg))

    assert (calls.resolve, calls.owner) == (1, 0)
    assert len(set(seen)) == 1


async def test_notices_off_keeps_the_query_per_update(make_dp, bot, updates, listener,
                                                      monkeypatch):
    calls = Calls(monkeypatch)
    dp = make_dp(BillingConfig(identity_notices=False), recording_router([]))
    tg = updates.user()
    for _ in range(3):
        await dp.feed_update(bot, updates.message("who", user=tg))

    assert (calls.resolve, calls.owner) == (1, 2)


async def merge_elsewhere(make_dp, bot, updates, make_user, monkeypatch,
                          bot_listener: IdentityListener) -> None:
    """A user cached by this bot is merged by another process; the next update sees the
    target."""
    listening = bot_listener.live
    calls = Calls(monkeypatch)
    seen: list[int] = []
    cache = IdentityCache()
    dp = make_dp(BillingConfig(), recording_router(seen), cache=cache)
    tg = updates.user()
    await dp.feed_update(bot, updates.message("who", user=tg))
    await dp.feed_update(bot, updates.message("who", user=tg))
    source = seen[0]
    target = await sync_to_async(make_user)()
    assert cache.get(str(tg.id)) is not None

    await other_process("merge", str(target.pk), str(source))
    if listening:  # the notice arrives on commit and evicts the entry
        await until(lambda: cache.get(str(tg.id)) is None, "the merge notice")
        assert calls.owner == 0
    else:  # nothing is trusted without a listener: every cached update queried
        assert calls.owner == 1
    await dp.feed_update(bot, updates.message("who", user=tg))

    assert seen[-1] == target.pk
    assert bot_listener.live is listening


@pytest.mark.slow
async def test_merge_in_another_process_evicts_the_cached_user(make_dp, bot, updates,
                                                               make_user, monkeypatch,
                                                               listener):
    await merge_elsewhere(make_dp, bot, updates, make_user, monkeypatch, listener)


@pytest.mark.slow
async def test_merge_in_another_process_is_seen_without_listener(make_dp, bot, updates,
                                                                 make_user, monkeypatch, idle):
    await merge_elsewhere(make_dp, bot, updates, make_user, monkeypatch, idle)


async def test_rolled_back_merge_sends_nothing(make_dp, bot, updates, make_user, listener):
    seen: list[int] = []
    cache = IdentityCache()
    dp = make_dp(BillingConfig(), recording_router(seen), cache=cache)
    tg = updates.user()
    await dp.feed_update(bot, updates.message("who", user=tg))
    target = await sync_to_async(make_user)()

    await other_process("merge", str(target.pk), str(seen[0]), "rollback")
    await other_process("notice", "marker")  # committed after the rolled back merge
    await until(lambda: listener.payloads, "the marker notice")

    assert listener.payloads == ['{"users":["marker"],"identities":[]}']
    assert cache.get(str(tg.id)) is not None
    await dp.feed_update(bot, updates.message("who", user=tg))
    assert seen[-1] == seen[0]


async def test_identity_saved_or_deleted_sends_a_notice(make_user, listener):
    first, second = await sync_to_async(make_user)(), await sync_to_async(make_user)()
    row = await ExternalIdentity.objects.acreate(provider="telegram", external_id="55",
                                                 user=first)
    row.metadata = {"username": "x"}
    await row.asave(update_fields=["metadata"])  # profile only: nothing to tell
    await row.asave()  # a full save that changes nothing: nothing to tell either
    row.user = second
    await row.asave()
    await row.adelete()

    await until(lambda: len(listener.payloads) >= 2, "two notices")
    await asyncio.sleep(0.2)  # nothing else follows
    assert listener.payloads == [
        f'{{"users":["{first.pk}","{second.pk}"],"identities":[["telegram","55"]]}}',
        f'{{"users":["{second.pk}"],"identities":[["telegram","55"]]}}',
    ]


async def test_killed_listener_falls_back_reconnects_and_clears(make_dp, bot, updates,
                                                                make_user, listener,
                                                                monkeypatch):
    calls = Calls(monkeypatch)
    seen: list[int] = []
    cache = IdentityCache()
    dp = make_dp(BillingConfig(), recording_router(seen), cache=cache)
    tg = updates.user()
    await dp.feed_update(bot, updates.message("who", user=tg))
    pid = listener._conn.info.backend_pid

    @sync_to_async
    def terminate() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

    await terminate()
    await until(lambda: not listener.live, "the listener to notice the loss")
    # Away: a move whose notice nobody hears is still seen, by the query.
    other = await sync_to_async(make_user)()
    await ExternalIdentity.objects.filter(external_id=str(tg.id)).aupdate(user_id=other.pk)
    calls.reset()
    await dp.feed_update(bot, updates.message("who", user=tg))
    assert seen[-1] == other.pk
    assert calls.owner == 1

    await until(lambda: listener.live, "the listener to reconnect")
    assert listener.connects == 2
    assert len(cache) == 0  # nothing read while it was away is trusted
    calls.reset()
    await dp.feed_update(bot, updates.message("who", user=tg))
    await dp.feed_update(bot, updates.message("who", user=tg))
    assert (calls.resolve, calls.owner) == (1, 0)
    assert seen[-1] == other.pk


async def test_read_racing_a_notice_is_not_trusted(make_dp, bot, updates, listener,
                                                   monkeypatch):
    calls = Calls(monkeypatch)
    cache = IdentityCache()
    dp = make_dp(BillingConfig(), recording_router([]), cache=cache)
    tg = updates.user()
    resolve = billing.aresolve_account

    async def notice_during_read(*args: Any) -> Any:
        found = await resolve(*args)
        listener.apply('{"users":["0"],"identities":[]}')  # arrives while the read is in flight
        return found

    monkeypatch.setattr(billing, "aresolve_account", notice_during_read)
    await dp.feed_update(bot, updates.message("who", user=tg))
    assert cache.get(str(tg.id)).fresh_in is None

    await dp.feed_update(bot, updates.message("who", user=tg))  # validated once more
    await dp.feed_update(bot, updates.message("who", user=tg))  # then trusted
    assert calls.owner == 1


async def test_cache_stays_bounded_over_many_distinct_users(make_dp, bot, updates, listener):
    cache = IdentityCache(25)
    dp = make_dp(BillingConfig(identity_cache_size=25), recording_router([]), cache=cache)
    for _ in range(120):
        await dp.feed_update(bot, updates.message("who", user=updates.user()))

    assert len(cache) == 25
