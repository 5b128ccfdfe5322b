"""The demo bot through a real Dispatcher and the fake Bot API session (no network)."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from django.core.management import call_command

from bot_kit.testing import FakeSession, UpdateFactory, make_bot
from examples.demo_bot.bot import (
    PREDICTIONS,
    PROPHECIES,
    WELCOME,
    build_dispatcher,
    demo_config,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo_catalog() -> None:
    call_command("billable_seed_demo", verbosity=0)


@pytest.fixture
def session() -> FakeSession:
    return FakeSession()


@pytest.fixture
def bot(session: FakeSession) -> Bot:
    return make_bot(session)


@pytest.fixture
def dp() -> Dispatcher:
    return build_dispatcher(demo_config(admin_ids=frozenset({1})))


def replies(session: FakeSession) -> list[str]:
    return [str(call.params.get("text", "")) for call in session.calls_to("sendMessage")]


async def balance_of(telegram_id: int, key: str) -> int:
    from billable.models import ExternalIdentity
    from billable.services import TransactionService

    user = await ExternalIdentity.aget_user_by_identity(str(telegram_id), provider="telegram")
    return await TransactionService.aget_balance(user.pk, key)


async def test_start_lists_every_demo_command(dp: Dispatcher, bot: Bot, session: FakeSession,
                                              demo_catalog: None) -> None:
    await dp.feed_update(bot, UpdateFactory().command("start"))

    assert replies(session) == [WELCOME]
    for command in ("/trial", "/buy", "/exchange", "/predict", "/balance", "/subscribe",
                    "/paysupport"):
        assert command in WELCOME


async def test_predict_without_quota_shows_paywall_and_charges_nothing(
    dp: Dispatcher, bot: Bot, session: FakeSession, demo_catalog: None
) -> None:
    updates = UpdateFactory()
    await dp.feed_update(bot, updates.command("predict"))

    (text,) = replies(session)
    assert text.startswith("You have run out of Predictions")
    assert not any(text.startswith("🔮") for text in replies(session))
    assert await balance_of(updates.default_user.id, PREDICTIONS) == 0


async def test_trial_then_predict_spends_exactly_one(
    dp: Dispatcher, bot: Bot, session: FakeSession, demo_catalog: None
) -> None:
    updates = UpdateFactory()
    await dp.feed_update(bot, updates.command("trial"))
    await dp.feed_update(bot, updates.command("predict"))

    assert replies(session)[0] == "Your free trial is active: Predictions × 3."
    assert replies(session)[1].removeprefix("🔮 ") in PROPHECIES
    assert await balance_of(updates.default_user.id, PREDICTIONS) == 2


async def test_redelivered_predict_update_is_charged_once(
    dp: Dispatcher, bot: Bot, session: FakeSession, demo_catalog: None
) -> None:
    updates = UpdateFactory()
    await dp.feed_update(bot, updates.command("trial"))
    predict = updates.command("predict")
    await dp.feed_update(bot, predict)
    await dp.feed_update(bot, predict)  # Telegram retries the same update_id

    assert sum(text.startswith("🔮") for text in replies(session)) == 1
    assert await balance_of(updates.default_user.id, PREDICTIONS) == 2


async def test_exchange_without_credits_explains_and_changes_nothing(
    dp: Dispatcher, bot: Bot, session: FakeSession, demo_catalog: None
) -> None:
    updates = UpdateFactory()
    await dp.feed_update(bot, updates.command("exchange"))

    (text,) = replies(session)
    assert text.startswith("Not enough credits")
    assert await balance_of(updates.default_user.id, PREDICTIONS) == 0


async def test_exchange_spends_fifty_credits_for_ten_predictions(
    dp: Dispatcher, bot: Bot, session: FakeSession, demo_catalog: None
) -> None:
    from billable.models import ExternalIdentity
    from billable.services import TransactionService

    updates = UpdateFactory()
    await dp.feed_update(bot, updates.command("start"))  # first contact creates the identity
    user: Any = await ExternalIdentity.aget_user_by_identity(str(updates.default_user.id),
                                                            provider="telegram")
    await TransactionService.agrant_offer(user.pk, "STARS_PACK_S", source="manual_grant")

    await dp.feed_update(bot, updates.command("exchange"))

    assert replies(session)[-1] == "Exchanged 50 credits. Predictions left: 10."
    assert await balance_of(updates.default_user.id, "CREDITS") == 50


async def test_offline_conversation_passes_every_check(demo_catalog: None) -> None:
    """The same scripted story ``python3 dev.py demo`` prints, in-process."""
    from examples.demo_bot.conversation import play_offline

    lines: list[str] = []
    conversation = await play_offline(echo=lines.append)

    assert conversation.checks == {"trial granted": True, "invoice sent": True,
                                   "payment confirmed": True, "quota used": True,
                                   "refund done": True, "speaks Russian": True}
    assert lines == conversation.lines
    assert any(line.startswith("bot      > [invoice] 100 credits: 50 XTR") for line in lines)


async def test_exchange_when_offer_is_deactivated_says_closed(
    dp: Dispatcher, bot: Bot, session: FakeSession, demo_catalog: None
) -> None:
    from billable.models import Offer

    await Offer.objects.filter(sku="EXCHANGE_PREDICT_10").aupdate(is_active=False)
    await dp.feed_update(bot, UpdateFactory().command("exchange"))

    assert replies(session) == ["The exchange is closed right now."]


@pytest.mark.django_db
def test_demo_catalog_has_russian_names_for_everything() -> None:
    from django.core.management import call_command

    from billable.models import Offer, Product

    call_command("billable_seed_demo", verbosity=0)
    for item in [*Product.objects.all(), *Offer.objects.all()]:
        name = item.localized_name("ru")
        assert name != item.name and not any("a" <= ch.lower() <= "z" for ch in name), name
