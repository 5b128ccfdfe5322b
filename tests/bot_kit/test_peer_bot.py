"""Peer acceptance suite, part 1: setup, identity, quota gating, trials and commands.

Written from the contract only (SPEC §8, docs/bot_kit.md): a host ``Dispatcher`` driven through
``bot_kit.testing``. Payments are in ``test_peer_payments.py``, the testing kit itself in
``test_peer_kit.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message, PreCheckoutQuery

from bot_kit import BillingConfig, HasQuota, requires_quota, send_paywall, setup_billing
from bot_kit.callbacks import BuyOffer
from bot_kit.testing import FakeSession, UpdateFactory, make_bot
from tests.bot_kit.peer import (
    CYRILLIC,
    SECRET,
    assert_no_leak,
    billing_user_of,
    buttons,
    give,
    identity_of,
    remaining,
    texts,
)

pytestmark = pytest.mark.django_db

CONFIG = BillingConfig(offers=("PACK_10",), trial_offer="TRIAL_3", signing_secrets=(SECRET,),
                       admin_ids=frozenset({999}))


def host(config: BillingConfig = CONFIG, *routers: Router) -> Dispatcher:
    dp = Dispatcher()
    setup_billing(dp, config)
    for router in routers:
        dp.include_router(router)
    return dp


@pytest.fixture
def kit() -> tuple[FakeSession, Bot, UpdateFactory]:
    session = FakeSession()
    return session, make_bot(session), UpdateFactory()


def gated_router(calls: list[Any], *, fail: bool = False, amount: int = 1) -> Router:
    router = Router(name="host")

    @router.message(Command("predict"))
    @requires_quota("PREDICTIONS", amount=amount)
    async def predict(message: Message, billing_user_id: int) -> None:
        calls.append(billing_user_id)
        if fail:
            raise RuntimeError("secret internal detail /srv/app.py")
        await message.answer("sunny")

    return router


# -- setup -------------------------------------------------------------------------------------


async def test_host_catch_all_does_not_swallow_payments_or_kit_commands(catalog, kit) -> None:
    session, bot, updates = kit
    seen: list[str] = []
    host_router = Router(name="catch_all")

    @host_router.message()
    async def everything(message: Message) -> None:
        seen.append(message.text or "<service>")

    @host_router.pre_checkout_query()
    async def host_precheckout(query: PreCheckoutQuery) -> None:
        seen.append("precheckout")

    @host_router.callback_query()
    async def any_button(query: CallbackQuery) -> None:
        seen.append("callback")

    dp = host(CONFIG, host_router)
    await dp.feed_update(bot, updates.callback(BuyOffer(sku="PACK_10").pack()))
    invoice = session.calls_to("sendInvoice")[0].params
    await dp.feed_update(bot, updates.pre_checkout(payload=invoice["payload"], total_amount=50))
    await dp.feed_update(bot, updates.successful_payment(payload=invoice["payload"],
                                                         total_amount=50, charge_id="c-swallow"))
    await dp.feed_update(bot, updates.command("balance"))
    await dp.feed_update(bot, updates.message("just chatting"))

    assert seen == ["just chatting"]
    assert session.calls_to("answerPreCheckoutQuery")[0].params["ok"] is True
    assert await remaining(updates.default_user.id, "PREDICTIONS") == 10


# -- identity ----------------------------------------------------------------------------------


def spy_router(seen: list[dict[str, Any]]) -> Router:
    router = Router(name="spy")

    def record(kind: str, billing_user: Any, billing_user_id: int, billing: Any,
               billing_lang: str) -> None:
        seen.append({"kind": kind, "user": billing_user, "user_id": billing_user_id,
                     "facade_user_id": billing.user_id, "lang": billing_lang})

    @router.message(F.text == "hi")
    async def on_message(message: Message, billing_user: Any, billing_user_id: int,
                         billing: Any, billing_lang: str) -> None:
        record("message", billing_user, billing_user_id, billing, billing_lang)

    @router.callback_query(F.data == "host:ping")
    async def on_callback(query: CallbackQuery, billing_user: Any, billing_user_id: int,
                          billing: Any, billing_lang: str) -> None:
        record("callback", billing_user, billing_user_id, billing, billing_lang)

    return router


async def test_first_contact_creates_identity_with_profile_and_injects_user(kit) -> None:
    _, bot, updates = kit
    seen: list[dict[str, Any]] = []
    dp = host(CONFIG, spy_router(seen))
    alice = updates.user(username="alice", first_name="Alice", last_name="Liddell",
                         language_code="en")

    await dp.feed_update(bot, updates.message("hi", user=alice))
    await dp.feed_update(bot, updates.callback("host:ping", user=alice))

    identity = await identity_of(alice.id)
    assert identity is not None and identity.user_id is not None
    assert identity.metadata["username"] == "alice"
    assert identity.metadata["first_name"] == "Alice"
    assert identity.metadata["last_name"] == "Liddell"
    assert identity.metadata["language_code"] == "en"
    assert [s["kind"] for s in seen] == ["message", "callback"]
    for entry in seen:
        assert entry["user_id"] == identity.user_id == entry["user"].pk
        assert entry["facade_user_id"] == identity.user_id


async def test_profile_changes_are_stored(kit) -> None:
    _, bot, updates = kit
    dp = host(CONFIG)
    before = updates.user(username="old_name", language_code="en")
    await dp.feed_update(bot, updates.message("x", user=before))
    after = updates.user(before.id, username="new_name", language_code="ru")
    await dp.feed_update(bot, updates.message("y", user=after))

    identity = await identity_of(before.id)
    assert identity.metadata["username"] == "new_name"
    assert identity.metadata["language_code"] == "ru"


@pytest.mark.parametrize("kind", ["pre_checkout", "subscription", "inline_query",
                                  "refunded_payment"])
async def test_every_update_with_a_user_is_identified(kind: str, kit) -> None:
    session, bot, updates = kit
    dp = host(CONFIG)
    stranger = updates.user(language_code="en")
    builders = {
        "pre_checkout": lambda: updates.pre_checkout(payload="junk", total_amount=1,
                                                     user=stranger),
        "subscription": lambda: updates.subscription(state="canceled", payload="junk",
                                                     user=stranger),
        "inline_query": lambda: updates.inline_query("q", user=stranger),
        "refunded_payment": lambda: updates.refunded_payment(payload="junk", total_amount=1,
                                                             charge_id="nope", user=stranger),
    }
    await dp.feed_update(bot, builders[kind]())
    assert await billing_user_of(stranger.id) is not None
    assert_no_leak(session)


async def test_user_without_username_last_name_or_language(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host(CONFIG)
    bare = updates.user(username="", last_name="", language_code=None)
    bare = bare.model_copy(update={"username": None, "last_name": None})

    await dp.feed_update(bot, updates.command("balance", user=bare))
    await dp.feed_update(bot, updates.command("trial", user=bare))

    identity = await identity_of(bare.id)
    assert identity is not None and identity.user_id is not None
    said = texts(session)
    assert len(said) == 2 and not CYRILLIC.search(" ".join(said))  # default language: English
    assert await remaining(bare.id, "PREDICTIONS") == 3
    assert_no_leak(session)


@pytest.mark.parametrize(("code", "russian"), [("ru", True), ("ru-RU", True), ("RU", True),
                                               ("pt-BR", False), ("en-GB", False),
                                               ("zz", False)])
async def test_language_is_chosen_from_language_code(code: str, russian: bool, catalog,
                                                     kit) -> None:
    session, bot, updates = kit
    dp = host(CONFIG)
    await dp.feed_update(bot, updates.command("paysupport", user=updates.user(
        language_code=code)))
    [said] = texts(session)
    assert bool(CYRILLIC.search(said)) is russian


# -- quota gating ------------------------------------------------------------------------------


async def test_gated_handler_charges_on_success(catalog, kit) -> None:
    session, bot, updates = kit
    calls: list[Any] = []
    dp = host(CONFIG, gated_router(calls, amount=2))
    await give(updates.default_user.id, "PACK_10")

    await dp.feed_update(bot, updates.command("predict"))

    assert len(calls) == 1
    assert await remaining(updates.default_user.id, "PREDICTIONS") == 8
    assert texts(session) == ["sunny"]


async def test_gated_handler_that_raises_is_not_charged_and_leaks_nothing(catalog, kit) -> None:
    session, bot, updates = kit
    calls: list[Any] = []
    dp = host(CONFIG, gated_router(calls, fail=True))
    await give(updates.default_user.id, "PACK_10")

    with pytest.raises(RuntimeError):
        await dp.feed_update(bot, updates.command("predict"))

    assert len(calls) == 1
    assert await remaining(updates.default_user.id, "PREDICTIONS") == 10
    assert_no_leak(session)


async def test_redelivered_update_is_charged_once(catalog, kit) -> None:
    _, bot, updates = kit
    calls: list[Any] = []
    dp = host(CONFIG, gated_router(calls))
    await give(updates.default_user.id, "PACK_10")
    update = updates.command("predict")

    await dp.feed_update(bot, update)
    await dp.feed_update(bot, update)
    await dp.feed_update(bot, updates.command("predict", update_id=update.update_id))

    assert len(calls) == 1
    assert await remaining(updates.default_user.id, "PREDICTIONS") == 9


@pytest.mark.parametrize(("code", "russian"), [("en", False), ("ru", True), ("ru-RU", True)])
async def test_missing_quota_shows_localized_paywall_with_buy_buttons(code: str, russian: bool,
                                                                      catalog, kit) -> None:
    session, bot, updates = kit
    calls: list[Any] = []
    dp = host(CONFIG, gated_router(calls))

    await dp.feed_update(bot, updates.command("predict", user=updates.user(language_code=code)))

    assert calls == []
    [said] = texts(session)
    assert bool(CYRILLIC.search(said)) is russian
    assert [data for _, data in buttons(session)] == [BuyOffer(sku="PACK_10").pack()]


async def test_paywall_button_leads_to_an_invoice(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host(CONFIG, gated_router([]))
    await dp.feed_update(bot, updates.command("predict"))
    [(_, data)] = buttons(session)

    await dp.feed_update(bot, updates.callback(data))

    [invoice] = session.calls_to("sendInvoice")
    assert invoice.params["currency"] == "XTR"


async def test_flag_by_hand_gates_like_the_decorator(catalog, kit) -> None:
    _, bot, updates = kit
    router = Router(name="flags")
    ran: list[int] = []

    @router.message(Command("twice"), flags={"billable_quota": {"product_key": "predictions",
                                                                "amount": 2}})
    async def twice(message: Message) -> None:
        ran.append(1)

    dp = host(CONFIG, router)
    await give(updates.default_user.id, "PACK_10")
    await dp.feed_update(bot, updates.command("twice"))
    assert ran == [1]
    assert await remaining(updates.default_user.id, "PREDICTIONS") == 8


async def test_has_quota_filter_injects_balance_charges_nothing_and_falls_through(catalog,
                                                                                  kit) -> None:
    session, bot, updates = kit
    router = Router(name="filtered")
    got: list[Any] = []

    @router.message(Command("peek"), HasQuota("PREDICTIONS", amount=5))
    async def peek(message: Message, billing_balance: Any) -> None:
        got.append(("rich", billing_balance.remaining, billing_balance.can_use))

    @router.message(Command("peek"))
    async def poor(message: Message, bot: Bot, billing_lang: str,
                   billing_config: BillingConfig) -> None:
        got.append(("poor",))
        await send_paywall(message, bot, product_key="PREDICTIONS", lang=billing_lang,
                           config=billing_config)

    dp = host(CONFIG, router)
    rich, poor_user = updates.user(), updates.user()
    await give(rich.id, "PACK_10")

    await dp.feed_update(bot, updates.command("peek", user=rich))
    await dp.feed_update(bot, updates.command("peek", user=poor_user))

    assert got == [("rich", 10, True), ("poor",)]
    assert await remaining(rich.id, "PREDICTIONS") == 10
    assert [data for _, data in buttons(session)] == [BuyOffer(sku="PACK_10").pack()]


# -- trials ------------------------------------------------------------------------------------


async def test_trial_is_not_claimed_again_after_the_identity_moves(catalog, kit) -> None:
    from asgiref.sync import sync_to_async
    from django.contrib.auth import get_user_model

    from billable.models import ExternalIdentity

    _, bot, updates = kit
    dp = host(CONFIG)
    await dp.feed_update(bot, updates.command("trial"))

    @sync_to_async
    def move() -> None:
        fresh = get_user_model().objects.create(username="fresh_account")
        ExternalIdentity.objects.filter(
            provider="telegram", external_id=str(updates.default_user.id)).update(user=fresh)

    await move()
    await dp.feed_update(bot, updates.command("trial"))
    assert await remaining(updates.default_user.id, "PREDICTIONS") == 0


# -- commands ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["en", "ru"])
async def test_balance_lists_products_in_the_users_language(code: str, catalog, kit) -> None:
    session, bot, updates = kit
    dp = host(CONFIG)
    user = updates.user(language_code=code)
    await dp.feed_update(bot, updates.command("balance", user=user))
    await give(user.id, "PACK_10")
    await dp.feed_update(bot, updates.command("balance", user=user))

    empty, full = texts(session)
    assert "10" in full and "10" not in empty
    assert bool(CYRILLIC.search(empty)) is (code == "ru")
    assert bool(CYRILLIC.search(full)) is (code == "ru")


@pytest.mark.parametrize("code", ["en", "ru"])
async def test_buy_shows_the_catalog_keyboard(code: str, catalog, kit) -> None:
    session, bot, updates = kit
    dp = host(CONFIG)
    await dp.feed_update(bot, updates.command("buy", user=updates.user(language_code=code)))
    [said] = texts(session)
    assert bool(CYRILLIC.search(said)) is (code == "ru")
    assert [data for _, data in buttons(session)] == [BuyOffer(sku="PACK_10").pack()]


async def test_paysupport_always_answers_even_during_an_outage(catalog, kit,
                                                               monkeypatch) -> None:
    from bot_kit import billing as port

    session, bot, updates = kit
    dp = host(CONFIG)

    async def down(*args: Any, **kwargs: Any) -> Any:
        from django.db import OperationalError

        raise OperationalError("connection refused to 10.0.0.5")

    monkeypatch.setattr(port, "aresolve_account", down)
    monkeypatch.setattr(port, "acurrent_owner", down)
    await dp.feed_update(bot, updates.command("paysupport"))
    assert len(texts(session)) == 1
    assert_no_leak(session)


@pytest.mark.parametrize("code", ["en", "ru"])
async def test_refund_is_admin_only(code: str, catalog, kit) -> None:
    session, bot, updates = kit
    dp = host(CONFIG)
    await dp.feed_update(bot, updates.command("refund", "stxWHATEVER",
                                              user=updates.user(language_code=code)))
    [said] = texts(session)
    assert bool(CYRILLIC.search(said)) is (code == "ru")
    assert session.calls_to("refundStarPayment") == []


@pytest.mark.parametrize("args", [None, "stxUNKNOWN", "12345678901234567890", "'; DROP --"])
async def test_refund_by_admin_with_bad_reference_answers_without_leaking(args: str | None,
                                                                          catalog, kit) -> None:
    session, bot, updates = kit
    dp = host(CONFIG)
    await dp.feed_update(bot, updates.command("refund", args, user=updates.user(999)))
    assert len(texts(session)) == 1
    assert session.calls_to("refundStarPayment") == []
    assert_no_leak(session)


@pytest.mark.parametrize("data", ["", "garbage", "bk_buy", "bk_buy:", "bk_buy:NOPE",
                                  "bk_buy:PACK_10:extra", "bk_buy:" + "A" * 60, "bk_buy:TRIAL_3",
                                  "bk_buy:OTHER_5", "\u0000\u202e"])
async def test_garbage_callback_data_never_leaks(data: str, catalog, kit) -> None:
    session, bot, updates = kit
    dp = host(CONFIG)
    await dp.feed_update(bot, updates.callback(data))
    assert session.calls_to("sendInvoice") == []
    assert_no_leak(session)


@pytest.mark.parametrize("args", ["NOPE", "trial_3", "OTHER_5", "x" * 200, "PACK_10 PACK_10"])
async def test_buy_with_unknown_or_unsold_sku_creates_nothing(args: str, catalog, kit) -> None:
    from tests.bot_kit.peer import orders_of

    session, bot, updates = kit
    dp = host(CONFIG)
    await dp.feed_update(bot, updates.command("buy", args))
    assert session.calls_to("sendInvoice") == []
    assert await orders_of(updates.default_user.id) == []
    assert len(texts(session)) == 1
    assert_no_leak(session)


# -- nasty inputs ------------------------------------------------------------------------------


async def test_updates_without_a_user_pass_through(catalog, kit) -> None:
    from aiogram.types import Chat, MessageEntity, Update
    from django.utils import timezone

    session, bot, updates = kit
    seen: list[str] = []
    router = Router(name="channel")

    @router.channel_post()
    async def post(message: Message) -> None:
        seen.append(message.text or "")

    dp = host(CONFIG, router)
    channel = Chat(id=-1001234567890, type="channel", title="News")
    post_update = Update(update_id=updates.next_update_id(), channel_post=Message(
        message_id=1, date=timezone.now(), chat=channel, sender_chat=channel, text="/balance",
        entities=[MessageEntity(type="bot_command", offset=0, length=8)]))
    anonymous_admin = Update(update_id=updates.next_update_id(), message=Message(
        message_id=2, date=timezone.now(), chat=Chat(id=-100555, type="supergroup", title="G"),
        sender_chat=Chat(id=-100555, type="supergroup", title="G"), text="/balance",
        entities=[MessageEntity(type="bot_command", offset=0, length=8)]))

    await dp.feed_update(bot, post_update)
    await dp.feed_update(bot, anonymous_admin)

    assert seen == ["/balance"]
    assert_no_leak(session)


async def test_buy_button_on_an_inline_message_does_not_leak(catalog, kit) -> None:
    from aiogram.types import CallbackQuery as Query
    from aiogram.types import Update

    session, bot, updates = kit
    dp = host(CONFIG)
    query = Query(id="77", from_user=updates.default_user, chat_instance="ci",
                  inline_message_id="AAAinline", data=BuyOffer(sku="PACK_10").pack())
    await dp.feed_update(bot, Update(update_id=updates.next_update_id(), callback_query=query))
    assert_no_leak(session)
    assert len(session.calls_to("answerCallbackQuery")) == 1
    for call in session.calls_to("sendInvoice"):
        assert call.params["chat_id"] == updates.default_user.id


@pytest.mark.parametrize("name", ["A\x00B", "\u202e\u0000", "lone \ud800 surrogate", "😀" * 64,
                                  "<b>x</b>", "x" * 300])
async def test_odd_profile_names_still_identify_the_user(name: str, catalog, kit) -> None:
    session, bot, updates = kit
    dp = host(CONFIG)
    odd = updates.user(first_name=name, last_name=name, username="u_odd")
    await dp.feed_update(bot, updates.command("balance", user=odd))
    await dp.feed_update(bot, updates.command("trial", user=odd))
    assert await remaining(odd.id, "PREDICTIONS") == 3
    assert_no_leak(session)


async def test_billable_error_in_a_host_handler_is_answered_localized(catalog, kit) -> None:
    from billable.exceptions import BillableError

    session, bot, updates = kit
    router = Router(name="raises")

    @router.message(Command("boom"))
    async def boom(message: Message) -> None:
        raise BillableError("internal detail: user 17 row 99")

    dp = host(CONFIG, router)
    await dp.feed_update(bot, updates.command("boom", user=updates.user(language_code="ru")))
    [said] = texts(session)
    assert CYRILLIC.search(said) and "row 99" not in said


async def test_huge_telegram_ids_work_end_to_end(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host(CONFIG)
    big = updates.user(8_123_456_789)
    await dp.feed_update(bot, updates.callback(BuyOffer(sku="PACK_10").pack(), user=big))
    payload = session.calls_to("sendInvoice")[0].params["payload"]
    await dp.feed_update(bot, updates.pre_checkout(payload=payload, total_amount=50, user=big))
    assert session.calls_to("answerPreCheckoutQuery")[0].params["ok"] is True
    await dp.feed_update(bot, updates.successful_payment(payload=payload, total_amount=50,
                                                         charge_id="stxBIG", user=big))
    assert await remaining(big.id, "PREDICTIONS") == 10


# -- concurrency (PostgreSQL, real threads) ----------------------------------------------------


def run_threads(count: int, target: Any) -> list[BaseException]:
    import asyncio
    import threading

    from django.db import connections

    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            coro = target(index)
            start.wait()
            asyncio.run(coro)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def needs_postgres() -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("real concurrency needs PostgreSQL (set DATABASE_URL)")


@pytest.mark.django_db(transaction=True)
def test_concurrent_trial_claims_grant_once(catalog) -> None:
    import asyncio

    needs_postgres()
    updates = UpdateFactory()
    sessions = [FakeSession() for _ in range(6)]
    user = updates.default_user
    asyncio.run(host(CONFIG).feed_update(make_bot(FakeSession()),
                                         updates.message("hello", user=user)))

    errors = run_threads(6, lambda i: host(CONFIG).feed_update(
        make_bot(sessions[i]), updates.command("trial", user=user)))

    assert errors == []
    assert asyncio.run(remaining(user.id, "PREDICTIONS")) == 3
    assert sum(len(texts(s)) for s in sessions) == 6


@pytest.mark.django_db(transaction=True)
def test_concurrent_redelivery_of_a_gated_update_charges_once(catalog) -> None:
    import asyncio

    needs_postgres()
    updates = UpdateFactory()
    asyncio.run(give(updates.default_user.id, "PACK_10"))
    update = updates.command("predict")
    calls: list[Any] = []

    errors = run_threads(6, lambda i: host(CONFIG, gated_router(calls)).feed_update(
        make_bot(FakeSession()), update))

    assert errors == []
    assert len(calls) == 1
    assert asyncio.run(remaining(updates.default_user.id, "PREDICTIONS")) == 9


# -- more of the contract ----------------------------------------------------------------------


async def test_short_balance_shows_paywall_and_charges_nothing(catalog, kit) -> None:
    session, bot, updates = kit
    calls: list[Any] = []
    dp = host(CONFIG, gated_router(calls, amount=4))
    await dp.feed_update(bot, updates.command("trial"))  # 3 units

    await dp.feed_update(bot, updates.command("predict"))

    assert calls == []
    assert await remaining(updates.default_user.id, "PREDICTIONS") == 3
    assert [data for _, data in buttons(session)] == [BuyOffer(sku="PACK_10").pack()]


async def test_gated_callback_handler_charges_once_per_press(catalog, kit) -> None:
    session, bot, updates = kit
    router = Router(name="buttons")
    pressed: list[str] = []

    @router.callback_query(F.data == "host:predict")
    @requires_quota("PREDICTIONS")
    async def press(query: CallbackQuery) -> None:
        pressed.append(query.id)
        await query.answer("done")

    dp = host(CONFIG, router)
    await give(updates.default_user.id, "PACK_10")
    first = updates.callback("host:predict")
    await dp.feed_update(bot, first)
    await dp.feed_update(bot, first)
    await dp.feed_update(bot, updates.callback("host:predict"))

    assert len(pressed) == 2
    assert await remaining(updates.default_user.id, "PREDICTIONS") == 8

    poor = updates.user(language_code="ru")
    await dp.feed_update(bot, updates.callback("host:predict", user=poor))
    assert len(pressed) == 2
    assert any(CYRILLIC.search(t) for t in texts(session))


async def test_facade_consume_is_idempotent_by_key(catalog, kit) -> None:
    _, bot, updates = kit
    router = Router(name="manual")

    @router.message(Command("spend"))
    async def spend(message: Message, billing: Any) -> None:
        await billing.consume("PREDICTIONS", amount=2, idempotency_key="job-1")
        await billing.consume("predictions", amount=2, idempotency_key="job-1")

    dp = host(CONFIG, router)
    await give(updates.default_user.id, "PACK_10")
    await dp.feed_update(bot, updates.command("spend"))
    assert await remaining(updates.default_user.id, "PREDICTIONS") == 8


async def test_language_getter_wins_over_language_code(catalog, kit) -> None:
    session, bot, updates = kit
    config = BillingConfig(offers=("PACK_10",), signing_secrets=(SECRET,),
                           language_getter=lambda tg_user: "ru")
    dp = host(config)
    await dp.feed_update(bot, updates.command("paysupport", user=updates.user(
        language_code="en")))
    [said] = texts(session)
    assert CYRILLIC.search(said)


async def test_an_identity_moved_by_any_path_is_seen_by_the_next_update(catalog, kit) -> None:
    from asgiref.sync import sync_to_async
    from django.contrib.auth import get_user_model

    from billable.models import ExternalIdentity

    _, bot, updates = kit
    seen: list[dict[str, Any]] = []
    dp = host(CONFIG, spy_router(seen))
    await dp.feed_update(bot, updates.message("hi"))

    @sync_to_async
    def move() -> int:
        target = get_user_model().objects.create(username="merged_into")
        ExternalIdentity.objects.filter(
            provider="telegram", external_id=str(updates.default_user.id)).update(user=target)
        return int(target.pk)

    target_id = await move()
    await dp.feed_update(bot, updates.message("hi"))
    assert seen[0]["user_id"] != target_id
    assert seen[1]["user_id"] == target_id == seen[1]["facade_user_id"]


@pytest.mark.django_db(transaction=True)
async def test_kit_texts_survive_a_bot_with_html_parse_mode(make_product, make_offer) -> None:
    from aiogram.client.default import DefaultBotProperties
    from asgiref.sync import sync_to_async

    @sync_to_async
    def catalog_with_markup() -> None:
        product = make_product("PREDICTIONS", name="Tips <beta> & more")
        make_offer("PACK_10", items=[(product, 10)], price="50", currency="XTR",
                   name="Pack <10> & co")

    await catalog_with_markup()
    session, updates = FakeSession(), UpdateFactory()
    bot = Bot("42:TEST", session=session, default=DefaultBotProperties(parse_mode="HTML"))
    dp = host(CONFIG, gated_router([]))
    await give(updates.default_user.id, "PACK_10")
    await dp.feed_update(bot, updates.command("balance"))
    await dp.feed_update(bot, updates.command("buy"))
    await dp.feed_update(bot, updates.command("predict", user=updates.user()))
    await dp.feed_update(bot, updates.command("trial"))
    await dp.feed_update(bot, updates.callback(BuyOffer(sku="PACK_10").pack()))
    payload = session.calls_to("sendInvoice")[0].params["payload"]
    await dp.feed_update(bot, updates.successful_payment(payload=payload, total_amount=50,
                                                         charge_id="stx<&>"))
    await dp.feed_update(bot, updates.command("refund", "stx<&>", user=updates.user(999)))

    sent = session.calls_to("sendMessage")
    assert len(sent) >= 7 and any("<beta>" in call.params["text"] for call in sent)
    for call in sent:  # plain text: the host's default parse mode is not applied
        assert "parse_mode" not in call.params, call.params["text"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_contact_creates_one_account(catalog) -> None:
    import asyncio

    from tests.bot_kit.peer import count

    needs_postgres()
    updates = UpdateFactory()
    newcomer = updates.user()
    seen: list[dict[str, Any]] = []

    errors = run_threads(6, lambda i: host(CONFIG, spy_router(seen)).feed_update(
        make_bot(FakeSession()), updates.message("hi", user=newcomer)))

    assert errors == []
    assert len(seen) == 6 and len({s["user_id"] for s in seen}) == 1
    assert asyncio.run(count("billable.ExternalIdentity", provider="telegram",
                             external_id=str(newcomer.id))) == 1


async def test_renamed_command_frees_the_old_name(catalog, kit) -> None:
    _, bot, updates = kit
    seen: list[str] = []
    router = Router(name="own_trial")

    @router.message(Command("trial"))
    async def own(message: Message) -> None:
        seen.append("host")

    config = BillingConfig(offers=("PACK_10",), trial_offer="TRIAL_3", signing_secrets=(SECRET,),
                           commands={"trial": "free"})
    dp = host(config, router)
    await dp.feed_update(bot, updates.command("trial"))
    await dp.feed_update(bot, updates.command("free"))
    assert seen == ["host"]
    assert await remaining(updates.default_user.id, "PREDICTIONS") == 3


async def test_commands_addressed_to_another_bot_are_left_alone(catalog, kit) -> None:
    session, bot, updates = kit
    dp = host(CONFIG)
    await dp.feed_update(bot, updates.message("/paysupport@other_bot"))
    await dp.feed_update(bot, updates.message("/paysupport@test_bot"))
    assert len(texts(session)) == 1


async def test_setup_on_a_router_identifies_users_too(catalog, kit) -> None:
    _, bot, updates = kit
    seen: list[dict[str, Any]] = []
    dp = Dispatcher()
    outer = Router(name="outer")
    setup_billing(outer, CONFIG)
    outer.include_router(spy_router(seen))
    dp.include_router(outer)
    await dp.feed_update(bot, updates.message("hi"))
    assert len(seen) == 1 and seen[0]["user_id"] == (await identity_of(
        updates.default_user.id)).user_id


async def test_paywall_calls_on_quota_exhausted_once_per_paywall(catalog, kit) -> None:
    _, bot, updates = kit
    events: list[Any] = []
    config = BillingConfig(offers=("PACK_10",), signing_secrets=(SECRET,),
                           on_quota_exhausted=events.append)
    dp = host(config, gated_router([]))
    update = updates.command("predict")
    await dp.feed_update(bot, update)
    await dp.feed_update(bot, updates.command("predict"))
    assert [e.product_key for e in events] == ["PREDICTIONS", "PREDICTIONS"]
    assert events[0].telegram_user_id == updates.default_user.id


async def test_a_known_user_costs_at_most_one_query_per_update(catalog, kit) -> None:
    from tests.bot_kit.helpers import WorkerQueries

    _, bot, updates = kit
    seen: list[dict[str, Any]] = []
    dp = host(CONFIG, spy_router(seen))
    await dp.feed_update(bot, updates.message("hi"))
    async with WorkerQueries() as queries:
        await dp.feed_update(bot, updates.message("hi"))
        await dp.feed_update(bot, updates.message("hi"))
    assert len(seen) == 3
    statements = [q for q in queries.sql if "SAVEPOINT" not in q]
    assert len(statements) == 2, statements  # one indexed probe per update (no listener here)


@pytest.mark.parametrize("code", ["ru", "ru-RU", "en"])
async def test_paywall_and_buttons_use_the_catalog_translations(code: str, make_product,
                                                                make_offer, kit) -> None:
    from asgiref.sync import sync_to_async

    session, bot, updates = kit

    @sync_to_async
    def translated_catalog() -> None:
        product = make_product("PREDICTIONS", name="Predictions",
                               translations={"ru": {"name": "Предсказания"}})
        make_offer("PACK_10", items=[(product, 10)], price="50", currency="XTR",
                   name="10 predictions", translations={"ru": {"name": "10 предсказаний"}})

    await translated_catalog()
    dp = host(CONFIG, gated_router([]))
    await dp.feed_update(bot, updates.command("predict", user=updates.user(language_code=code)))

    [said] = texts(session)
    [(label, _)] = buttons(session)
    if code == "en":
        assert "Predictions" in said and label.startswith("10 predictions") and "50" in label
    else:
        assert "Предсказания" in said and label.startswith("10 предсказаний") and "50" in label


async def test_gated_handler_during_an_outage_answers_and_does_not_run(catalog, kit,
                                                                       monkeypatch) -> None:
    from django.db import OperationalError

    from bot_kit import billing as port

    session, bot, updates = kit
    calls: list[Any] = []
    dp = host(CONFIG, gated_router(calls))

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly at 10.0.0.5")

    monkeypatch.setattr(port, "aresolve_account", down)
    monkeypatch.setattr(port, "acurrent_owner", down)
    await dp.feed_update(bot, updates.command("predict", user=updates.user(language_code="ru")))

    assert calls == []
    [said] = texts(session)
    assert CYRILLIC.search(said)
    assert_no_leak(session)
