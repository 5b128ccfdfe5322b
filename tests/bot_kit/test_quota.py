"""Quota gating through a real Dispatcher: paywall, charge on success, idempotent updates."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from billable.exceptions import InsufficientFunds
from billable.models import ExternalIdentity
from billable.services import TransactionService
from bot_kit.callbacks import BuyOffer
from bot_kit.config import BillingConfig
from bot_kit.decorators import requires_quota
from bot_kit.facade import Balance
from bot_kit.filters import HasQuota
from bot_kit.keys import QUOTA_FLAG
from bot_kit.texts import get_text
from tests.bot_kit.helpers import buttons_sent, texts_sent
from tests.helpers import requires_postgres

pytestmark = pytest.mark.django_db(transaction=True)
CONFIG = BillingConfig(offers=("PACK_10", "OTHER_5"))


def gated_router(runs: list[int], *, amount: int = 1, fail: bool = False,
                 delay: float = 0.0) -> Router:
    router = Router()

    @router.message(Command("predict"))
    @requires_quota("predictions", amount=amount)
    async def predict(message: Message, billing_user_id: int) -> None:
        if delay:
            await asyncio.sleep(delay)
        runs.append(billing_user_id)
        if fail:
            raise RuntimeError("model crashed")
        await message.answer("prediction: sunny")

    return router


async def user_id_of(tg_id: int) -> int:
    return await ExternalIdentity.objects.filter(external_id=str(tg_id)).values_list(
        "user_id", flat=True).aget()


async def identify(dp: Any, bot: Any, updates: Any, tg: Any) -> int:
    await dp.feed_update(bot, updates.message("hi", user=tg))
    return await user_id_of(tg.id)


async def balance(user_id: int) -> int:
    return int(await TransactionService.aget_balance(user_id, "PREDICTIONS"))


def test_decorator_sets_the_handler_flag() -> None:
    @requires_quota("pdf_export", amount=2)
    async def handler() -> None: ...

    flag = handler.aiogram_flag[QUOTA_FLAG]  # type: ignore[attr-defined]
    assert (flag.product_key, flag.amount) == ("PDF_EXPORT", 2)


@pytest.mark.parametrize("amount", [0, -1, 1.5, True])
def test_decorator_rejects_bad_amounts(amount: Any) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        requires_quota("X", amount=amount)


@pytest.mark.parametrize(("lang", "expected_lang"), [("ru", "ru"), ("en", "en"), ("de", "en")])
async def test_zero_balance_shows_localized_paywall(make_dp, bot, session, updates, catalog,
                                                    lang, expected_lang):
    runs: list[int] = []
    dp = make_dp(CONFIG, gated_router(runs))

    await dp.feed_update(bot, updates.command("predict", user=updates.user(language_code=lang)))

    assert runs == []
    assert texts_sent(session) == [get_text("paywall", expected_lang, CONFIG,
                                            product="Predictions")]
    # Only the configured offer that contains the product, as a BuyOffer button.
    assert buttons_sent(session) == [
        (get_text("buy_button", expected_lang, CONFIG, name="10 predictions", price="50 ⭐"),
         BuyOffer(sku="PACK_10").pack()),
    ]


async def test_paywall_without_offers_says_nothing_is_on_sale(make_dp, bot, session, updates,
                                                              catalog):
    dp = make_dp(BillingConfig(), gated_router([]))

    await dp.feed_update(bot, updates.command("predict"))

    assert texts_sent(session) == [get_text("paywall_no_offers", "en", product="Predictions")]
    assert buttons_sent(session) == []


async def test_after_grant_handler_runs_and_balance_drops_by_amount(make_dp, bot, session,
                                                                   updates, catalog, grant):
    runs: list[int] = []
    dp = make_dp(CONFIG, gated_router(runs, amount=3))
    tg = updates.user()
    user_id = await identify(dp, bot, updates, tg)
    await grant(user_id, catalog["pack"])

    await dp.feed_update(bot, updates.command("predict", user=tg))

    assert runs == [user_id]
    assert await balance(user_id) == 7
    assert texts_sent(session)[-1] == "prediction: sunny"


async def test_raising_handler_charges_nothing(make_dp, bot, updates, catalog, grant):
    runs: list[int] = []
    dp = make_dp(CONFIG, gated_router(runs, fail=True))
    tg = updates.user()
    user_id = await identify(dp, bot, updates, tg)
    await grant(user_id, catalog["pack"])

    with pytest.raises(RuntimeError, match="model crashed"):
        await dp.feed_update(bot, updates.command("predict", user=tg))

    assert runs == [user_id]
    assert await balance(user_id) == 10


async def test_same_update_twice_charges_once_and_runs_once(make_dp, bot, updates, catalog,
                                                            grant):
    runs: list[int] = []
    dp = make_dp(CONFIG, gated_router(runs))
    tg = updates.user()
    user_id = await identify(dp, bot, updates, tg)
    await grant(user_id, catalog["pack"])
    update = updates.command("predict", user=tg)

    await dp.feed_update(bot, update)
    await dp.feed_update(bot, update)

    assert runs == [user_id]
    assert await balance(user_id) == 9


async def test_redelivery_after_a_failure_runs_again_and_charges_once(make_dp, bot, updates,
                                                                      catalog, grant):
    runs: list[int] = []
    failing = [True]
    router = Router()

    @router.message(Command("predict"))
    @requires_quota("PREDICTIONS")
    async def predict(message: Message, billing_user_id: int) -> None:
        runs.append(billing_user_id)
        if failing.pop() if failing else False:
            raise RuntimeError("temporary")

    dp = make_dp(CONFIG, router)
    tg = updates.user()
    user_id = await identify(dp, bot, updates, tg)
    await grant(user_id, catalog["pack"])
    update = updates.command("predict", user=tg)

    with pytest.raises(RuntimeError):
        await dp.feed_update(bot, update)
    await dp.feed_update(bot, update)
    await dp.feed_update(bot, update)

    assert runs == [user_id, user_id]
    assert await balance(user_id) == 9


async def test_different_bots_do_not_share_update_ids(make_dp, updates, catalog, grant):
    from bot_kit.testing import make_bot

    runs: list[int] = []
    dp = make_dp(CONFIG, gated_router(runs))
    first, second = make_bot(token="1:A"), make_bot(token="2:B")
    tg = updates.user()
    user_id = await identify(dp, first, updates, tg)
    await grant(user_id, catalog["pack"])
    update = updates.command("predict", user=tg)

    await dp.feed_update(first, update)
    await dp.feed_update(second, update)

    assert len(runs) == 2
    assert await balance(user_id) == 8


async def test_billable_error_in_a_handler_becomes_a_localized_text(make_dp, bot, session,
                                                                    updates, catalog):
    router = Router()

    @router.message(Command("spend"))
    async def spend(message: Message) -> None:
        raise InsufficientFunds()

    dp = make_dp(CONFIG, router)

    await dp.feed_update(bot, updates.command("spend", user=updates.user(language_code="ru")))

    assert texts_sent(session) == [get_text("error_insufficient_funds", "ru")]


async def test_has_quota_filter_injects_balance(make_dp, bot, session, updates, catalog, grant):
    router = Router()
    seen: list[Balance] = []

    @router.message(Command("peek"), HasQuota("predictions", amount=2))
    async def peek(message: Message, billing_balance: Balance) -> None:
        seen.append(billing_balance)

    @router.message(Command("peek"))
    async def fallback(message: Message) -> None:
        await message.answer("fallback")

    dp = make_dp(CONFIG, router)
    tg = updates.user()
    user_id = await identify(dp, bot, updates, tg)

    await dp.feed_update(bot, updates.command("peek", user=tg))
    await grant(user_id, catalog["pack"])
    await dp.feed_update(bot, updates.command("peek", user=tg))

    assert texts_sent(session) == ["fallback"]
    assert seen == [Balance(product_key="PREDICTIONS", remaining=10, can_use=True)]
    assert await balance(user_id) == 10


@requires_postgres
async def test_concurrent_updates_cannot_overspend(make_dp, bot, session, updates, catalog,
                                                   grant):
    runs: list[int] = []
    dp = make_dp(CONFIG, gated_router(runs, delay=0.01))
    tg = updates.user()
    user_id = await identify(dp, bot, updates, tg)
    await grant(user_id, catalog["trial"])  # 3 units

    await asyncio.gather(*(dp.feed_update(bot, updates.command("predict", user=tg))
                           for _ in range(10)))

    assert len(runs) == 3
    assert await balance(user_id) == 0
    paywall = get_text("paywall", "en", CONFIG, product="Predictions")
    assert texts_sent(session).count(paywall) == 7


async def test_flag_set_by_hand_is_enforced(make_dp, bot, session, updates, catalog):
    runs: list[int] = []
    router = Router()

    @router.message(Command("x"), flags={QUOTA_FLAG: {"product_key": "predictions",
                                                      "amount": 2}})
    async def handler(message: Message, billing_user_id: int) -> None:
        runs.append(billing_user_id)

    dp = make_dp(CONFIG, router)

    await dp.feed_update(bot, updates.command("x"))

    assert runs == []
    assert texts_sent(session) == [get_text("paywall", "en", CONFIG, product="Predictions")]


async def test_kit_filters_run_in_the_event_loop(make_dp):
    dp = make_dp(CONFIG)

    filters = [f for router in dp.sub_routers for observer in router.observers.values()
               for h in observer.handlers for f in h.filters or ()]

    assert filters
    assert all(f.awaitable for f in filters)  # no thread hop per update (asyncio.to_thread)


async def test_paywall_to_a_user_who_blocked_the_bot_is_only_logged(make_dp, bot, session,
                                                                    updates, catalog):
    runs: list[int] = []
    dp = make_dp(CONFIG, gated_router(runs))
    session.fail(method="sendMessage", status=403,
                 description="Forbidden: bot was blocked by the user")

    await dp.feed_update(bot, updates.command("predict"))

    assert runs == []
    assert len(session.calls_to("sendMessage")) == 1


def test_setup_twice_on_one_dispatcher_is_refused() -> None:
    from aiogram import Dispatcher

    from bot_kit.setup import setup_billing

    dp = Dispatcher()
    setup_billing(dp, CONFIG)

    with pytest.raises(RuntimeError, match="already"):
        setup_billing(dp, CONFIG)
