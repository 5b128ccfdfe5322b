"""/trial, /balance and /paysupport through a real Dispatcher."""

from __future__ import annotations

import pytest
from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from billable.models import ExternalIdentity, TrialHistory
from billable.services import TransactionService
from bot_kit.config import BillingConfig
from bot_kit.texts import get_text
from tests.bot_kit.helpers import texts_sent

TRIAL = BillingConfig(offers=("PACK_10",), trial_offer="trial_3")


async def user_id_of(tg_id: int) -> int:
    return await ExternalIdentity.objects.filter(external_id=str(tg_id)).values_list(
        "user_id", flat=True).aget()


@pytest.mark.django_db(transaction=True)
async def test_trial_twice_grants_once(make_dp, bot, session, updates, catalog):
    dp = make_dp(TRIAL)
    tg = updates.user(language_code="ru")

    await dp.feed_update(bot, updates.command("trial", user=tg))
    await dp.feed_update(bot, updates.command("trial", user=tg))

    user_id = await user_id_of(tg.id)
    assert await TransactionService.aget_balance(user_id, "PREDICTIONS") == 3
    assert texts_sent(session) == [
        get_text("trial_granted", "ru", products="Predictions × 3"),
        get_text("trial_already_used", "ru"),
    ]
    assert await TrialHistory.ahas_used_trial(telegram_id=tg.id)


@pytest.mark.django_db(transaction=True)
async def test_trial_is_per_telegram_identity_not_per_account(make_dp, bot, session, updates,
                                                             catalog):
    dp = make_dp(TRIAL)
    tg = updates.user()
    await dp.feed_update(bot, updates.command("trial", user=tg))
    # The identity is detached and re-created: a new account, the same Telegram id.
    await ExternalIdentity.objects.filter(external_id=str(tg.id)).adelete()

    await dp.feed_update(bot, updates.command("trial", user=tg))

    assert texts_sent(session)[-1] == get_text("trial_already_used", "en")
    assert await TransactionService.aget_balance(await user_id_of(tg.id), "PREDICTIONS") == 0


@pytest.mark.django_db(transaction=True)
async def test_trial_without_configured_offer_is_unavailable(make_dp, bot, session, updates):
    dp = make_dp(BillingConfig())

    await dp.feed_update(bot, updates.command("trial"))

    assert texts_sent(session) == [get_text("trial_unavailable", "en")]


@pytest.mark.django_db(transaction=True)
async def test_trial_of_a_paid_offer_is_refused(make_dp, bot, session, updates, catalog):
    dp = make_dp(BillingConfig(trial_offer="PACK_10"))

    await dp.feed_update(bot, updates.command("trial"))

    assert texts_sent(session) == [get_text("trial_unavailable", "en")]
    assert await TrialHistory.objects.acount() == 0


@pytest.mark.django_db(transaction=True)
async def test_custom_command_names(make_dp, bot, session, updates, catalog):
    dp = make_dp(BillingConfig(trial_offer="TRIAL_3", trial_command="free"))

    await dp.feed_update(bot, updates.command("free"))

    assert texts_sent(session) == [get_text("trial_granted", "en", products="Predictions × 3")]


@pytest.mark.django_db(transaction=True)
async def test_balance_lists_spendable_products(make_dp, bot, session, updates, catalog):
    dp = make_dp(TRIAL)
    tg = updates.user()
    await dp.feed_update(bot, updates.command("balance", user=tg))
    await TransactionService.agrant_offer(await user_id_of(tg.id), catalog["pack"])

    await dp.feed_update(bot, updates.command("balance", user=tg))

    assert texts_sent(session) == [
        get_text("balance_empty", "en"),
        "\n".join([get_text("balance_header", "en"),
                   get_text("balance_line", "en", name="Predictions", remaining=10)]),
    ]


def test_paysupport_answers_unknown_user_without_a_database(make_dp, bot, session, updates):
    """No ``django_db`` mark: any query would fail, and /paysupport must still answer."""
    import asyncio

    dp = make_dp(BillingConfig())

    asyncio.run(dp.feed_update(bot, updates.command("paysupport")))

    assert texts_sent(session) == [get_text("paysupport", "en")]


@pytest.mark.django_db(transaction=True)
async def test_host_overrides_texts(make_dp, bot, session, updates):
    config = BillingConfig(texts={"en": {"paysupport": "Write to @help"},
                                  "ru": {"paysupport": "Пишите @help"}})
    dp = make_dp(config)

    await dp.feed_update(bot, updates.command("paysupport"))
    await dp.feed_update(bot, updates.command("paysupport", user=updates.user(
        language_code="ru")))

    assert texts_sent(session) == ["Write to @help", "Пишите @help"]


def catch_all_router() -> Router:
    host = Router(name="host")

    @host.message()
    async def catch_all(message: Message) -> None:
        await message.answer("host")

    return host


@pytest.mark.django_db(transaction=True)
async def test_kit_commands_win_over_a_catch_all_included_after_setup(bot, session, updates):
    from aiogram import Dispatcher

    from bot_kit.setup import setup_billing

    dp = Dispatcher()
    kit = setup_billing(dp, BillingConfig())
    dp.include_router(catch_all_router())

    await dp.feed_update(bot, updates.command("paysupport"))
    await dp.feed_update(bot, updates.message("anything"))

    assert texts_sent(session) == [get_text("paysupport", "en"), "host"]
    assert [r.name for r in dp.sub_routers] == [*(r.name for r in kit), "host"]


@pytest.mark.django_db(transaction=True)
async def test_router_order_is_the_hosts_and_a_late_setup_warns(bot, session, updates, caplog):
    from aiogram import Dispatcher

    from bot_kit.setup import setup_billing

    dp = Dispatcher()
    dp.include_router(catch_all_router())
    with caplog.at_level("WARNING", logger="bot_kit"):
        kit = setup_billing(dp, BillingConfig())

    await dp.feed_update(bot, updates.command("paysupport"))

    assert texts_sent(session) == ["host"]  # the host chose to put its catch-all first
    assert [r.name for r in dp.sub_routers] == ["host", *(r.name for r in kit)]
    assert "call setup_billing() first" in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_include_routers_false_lets_the_host_place_the_kit(bot, session, updates):
    from aiogram import Dispatcher

    from bot_kit.setup import setup_billing

    dp = Dispatcher()
    kit = setup_billing(dp, BillingConfig(), include_routers=False)
    assert dp.sub_routers == []
    host = Router(name="host")

    @host.message(Command("balance"))
    async def own_balance(message: Message) -> None:
        await message.answer("host balance")

    dp.include_routers(host, *kit)

    await dp.feed_update(bot, updates.command("balance"))
    await dp.feed_update(bot, updates.command("paysupport"))

    assert texts_sent(session) == ["host balance", get_text("paysupport", "en")]


@pytest.mark.django_db(transaction=True)
async def test_commands_can_be_renamed_or_removed(make_dp, bot, session, updates, catalog):
    config = BillingConfig(offers=("PACK_10",), trial_offer="TRIAL_3",
                           commands={"buy": "purchase", "balance": "wallet", "refund": None,
                                     "paysupport": "help", "subscribe": None})
    dp = make_dp(config)

    for command in ("buy", "balance", "paysupport", "refund", "subscribe"):
        await dp.feed_update(bot, updates.command(command))
    assert session.calls == []  # the old names answer nothing

    await dp.feed_update(bot, updates.command("purchase"))
    await dp.feed_update(bot, updates.command("wallet"))
    await dp.feed_update(bot, updates.command("help"))

    assert texts_sent(session) == [get_text("buy_catalog", "en", config),
                                   get_text("balance_empty", "en", config),
                                   get_text("paysupport", "en", config)]
    assert config.command("buy") == "purchase" and config.command("refund") is None
    assert config.command("trial") == "trial"


def test_unknown_or_malformed_command_names_are_refused() -> None:
    with pytest.raises(ValueError, match="Unknown bot_kit command"):
        BillingConfig(commands={"by": "purchase"})
    with pytest.raises(ValueError, match="without the slash"):
        BillingConfig(commands={"buy": "/purchase"})
    with pytest.raises(ValueError, match="non-empty"):
        BillingConfig(commands={"buy": " "})


def test_older_command_fields_still_rename() -> None:
    config = BillingConfig(balance_command="wallet", commands={"trial": "free"})

    assert config.command("balance") == "wallet" and config.command("trial") == "free"


@pytest.mark.django_db(transaction=True)
async def test_balance_shows_until_when_a_period_product_ends(make_dp, bot, session, updates,
                                                       make_product, make_offer):
    from asgiref.sync import sync_to_async

    pro = await sync_to_async(make_product)("PRO", name="Pro", product_type="period")
    month = await sync_to_async(make_offer)("PRO_MONTH", items=[(pro, 1, "days", 30)])
    dp = make_dp(BillingConfig())
    tg = updates.user(language_code="ru")
    await dp.feed_update(bot, updates.message("hi", user=tg))
    [batch] = await TransactionService.agrant_offer(await user_id_of(tg.id), month)

    await dp.feed_update(bot, updates.command("balance", user=tg))

    expected = get_text("balance_line_until", "ru", name="Pro",
                        expiry=batch.expires_at.strftime("%Y-%m-%d"))
    assert texts_sent(session)[-1].splitlines() == [get_text("balance_header", "ru"), expected]


def test_a_replaced_config_renames_its_commands() -> None:
    """``dataclasses.replace`` re-resolves the command names: the older spellings
    (``balance_command`` …) rename unless ``commands`` named that feature explicitly."""
    from dataclasses import replace

    base = BillingConfig()
    assert replace(base, balance_command="wallet").command("balance") == "wallet"
    assert replace(base, trial_command="try").command("trial") == "try"
    named = BillingConfig(commands={"balance": "money", "buy": "purchase"})
    again = replace(named, balance_command="wallet", support_command="help_pay")
    assert (again.command("balance"), again.command("buy"),
            again.command("paysupport")) == ("money", "purchase", "help_pay")
    fresh = replace(named, commands={"buy": None})
    assert (fresh.command("buy"), fresh.command("balance")) == (None, "balance")
    assert replace(base) == base and dict(replace(named).commands) == dict(named.commands)
