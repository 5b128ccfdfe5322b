"""Identity middleware: Telegram users become billing users, with a cache that never goes stale."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram import F, Router
from aiogram.types import Message
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import OperationalError

from billable.models import ExternalIdentity
from bot_kit.config import BillingConfig
from bot_kit.facade import BillingFacade
from bot_kit.middlewares.identity import IdentityCache, IdentityMiddleware
from tests.bot_kit.helpers import WorkerQueries, texts_sent

pytestmark = pytest.mark.django_db(transaction=True)


def recording_router(seen: list[dict[str, Any]]) -> Router:
    router = Router()

    @router.message(F.text == "who")
    async def who(message: Message, billing_user: Any, billing_user_id: int,
                  billing: BillingFacade, billing_lang: str, billing_config: BillingConfig) -> None:
        seen.append({"user": billing_user, "user_id": billing_user_id, "billing": billing,
                     "lang": billing_lang, "config": billing_config})

    return router


async def identities() -> list[ExternalIdentity]:
    return [i async for i in ExternalIdentity.objects.filter(provider="telegram")]


async def test_first_contact_creates_exactly_one_user_with_profile(make_dp, bot, updates):
    seen: list[dict[str, Any]] = []
    config = BillingConfig()
    dp = make_dp(config, recording_router(seen))
    tg = updates.user(language_code="ru", username="ivan")
    users_before = await get_user_model().objects.acount()

    await dp.feed_update(bot, updates.message("who", user=tg))
    await dp.feed_update(bot, updates.message("who", user=tg))

    assert await get_user_model().objects.acount() == users_before + 1
    [identity] = await identities()
    assert identity.external_id == str(tg.id)
    assert identity.metadata["username"] == "ivan"
    assert identity.metadata["language_code"] == "ru"
    assert identity.metadata["first_name"] == tg.first_name
    assert [s["user_id"] for s in seen] == [identity.user_id, identity.user_id]
    assert seen[0]["billing"].user_id == identity.user_id
    assert seen[0]["lang"] == "ru"
    assert seen[0]["config"] is config


async def test_pre_checkout_from_unseen_user_creates_one_user(make_dp, bot, updates):
    dp = make_dp(BillingConfig())
    tg = updates.user()

    await dp.feed_update(bot, updates.pre_checkout(payload="x", total_amount=5, user=tg))

    [identity] = await identities()
    assert identity.external_id == str(tg.id)
    assert identity.user_id is not None


async def test_subscription_and_callback_updates_are_identified(make_dp, bot, updates):
    dp = make_dp(BillingConfig())
    alice, bob = updates.user(), updates.user()

    await dp.feed_update(bot, updates.subscription(state="canceled", payload="p", user=alice))
    await dp.feed_update(bot, updates.callback("noop", user=bob))

    assert sorted(i.external_id for i in await identities()) == sorted([str(alice.id),
                                                                        str(bob.id)])


async def test_known_user_costs_one_query(make_dp, bot, updates):
    dp = make_dp(BillingConfig(), recording_router([]))
    tg = updates.user()
    await dp.feed_update(bot, updates.message("who", user=tg))

    async with WorkerQueries() as queries:
        await dp.feed_update(bot, updates.message("who", user=tg))

    assert len(queries.sql) == 1
    assert "billable_external_identities" in queries.sql[0]


async def test_profile_change_is_stored(make_dp, bot, updates):
    dp = make_dp(BillingConfig(), recording_router([]))
    tg = updates.user(username="old")
    await dp.feed_update(bot, updates.message("who", user=tg))

    renamed = tg.model_copy(update={"username": "new"})
    await dp.feed_update(bot, updates.message("who", user=renamed))

    [identity] = await identities()
    assert identity.metadata["username"] == "new"


async def test_merge_moves_cached_user_to_target(make_dp, bot, updates, make_user):
    from billable.services import CustomerService

    seen: list[dict[str, Any]] = []
    dp = make_dp(BillingConfig(), recording_router(seen))
    tg = updates.user()
    await dp.feed_update(bot, updates.message("who", user=tg))
    target = await sync_to_async(make_user)()

    await CustomerService.amerge_customers(target.pk, seen[0]["user_id"])
    await dp.feed_update(bot, updates.message("who", user=tg))

    assert seen[-1]["user_id"] == target.pk
    assert seen[-1]["user"].pk == target.pk


async def test_identity_moved_without_signals_is_detected(bot, updates, make_dp, make_user):
    seen: list[dict[str, Any]] = []
    cache = IdentityCache()
    dp = make_dp(BillingConfig(), recording_router(seen), cache=cache)
    tg = updates.user()
    await dp.feed_update(bot, updates.message("who", user=tg))
    other = await sync_to_async(make_user)()

    # A queryset update sends no signal: the per-update check must catch it.
    await ExternalIdentity.objects.filter(external_id=str(tg.id)).aupdate(user_id=other.pk)
    await dp.feed_update(bot, updates.message("who", user=tg))

    assert seen[-1]["user_id"] == other.pk
    assert cache.get(str(tg.id)).user_id == other.pk


def test_cache_is_bounded() -> None:
    from bot_kit.middlewares.identity import CachedIdentity

    cache = IdentityCache(max_size=2)
    for n in range(3):
        cache.put(str(n), CachedIdentity(user=None, user_id=n, profile=()))

    assert len(cache) == 2
    assert cache.get("0") is None
    assert cache.get("2").user_id == 2


async def test_database_failure_still_reaches_support(make_dp, bot, updates, session,
                                                      monkeypatch):
    async def broken(self: IdentityMiddleware, tg_user: Any) -> Any:
        raise OperationalError("database is down")

    monkeypatch.setattr(IdentityMiddleware, "resolve", broken)
    dp = make_dp(BillingConfig())

    await dp.feed_update(bot, updates.command("paysupport", user=updates.user(
        language_code="ru")))

    assert texts_sent(session)[0].startswith("Поддержка по платежам")


async def test_revalidate_after_trusts_the_cache_but_merges_still_evict(make_dp, bot, updates,
                                                                       make_user):
    from billable.services import CustomerService

    seen: list[dict[str, Any]] = []
    dp = make_dp(BillingConfig(identity_revalidate_after=60), recording_router(seen))
    tg = updates.user()
    await dp.feed_update(bot, updates.message("who", user=tg))

    async with WorkerQueries() as queries:
        await dp.feed_update(bot, updates.message("who", user=tg))
    target = await sync_to_async(make_user)()
    await CustomerService.amerge_customers(target.pk, seen[0]["user_id"])
    await dp.feed_update(bot, updates.message("who", user=tg))

    assert queries.sql == []
    assert seen[-1]["user_id"] == target.pk


def test_config_rejects_negative_cache_settings() -> None:
    with pytest.raises(ValueError, match="revalidate"):
        BillingConfig(identity_revalidate_after=-1)
    with pytest.raises(ValueError, match="cache_size"):
        BillingConfig(identity_cache_size=-1)


async def test_one_billing_context_carries_what_the_older_names_carry(make_dp, bot, session,
                                                                       updates, catalog, grant):
    import dataclasses

    from bot_kit.context import BillingContext

    seen: list[BillingContext] = []
    config = BillingConfig()
    router = Router()

    @router.message(F.text == "ctx")
    async def ctx(message: Message, billing: BillingContext) -> None:
        seen.append(billing)
        await message.answer(str(await billing.balance("PREDICTIONS")))

    older: list[dict[str, Any]] = []
    dp = make_dp(config, recording_router(older), router)
    tg = updates.user(language_code="ru")
    await dp.feed_update(bot, updates.message("who", user=tg))
    await grant(older[0]["user_id"], catalog["pack"])

    await dp.feed_update(bot, updates.message("ctx", user=tg))

    [context] = seen
    assert texts_sent(session)[-1] == "10"  # the facade methods work through the port
    assert isinstance(context, BillingContext) and isinstance(context, BillingFacade)
    assert context.user_id == older[0]["user_id"] and context.user.pk == context.user_id
    assert (context.lang, context.config, context.telegram_user_id) == ("ru", config, tg.id)
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.lang = "en"  # type: ignore[misc]
