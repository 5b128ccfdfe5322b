"""The gates in front of the kit's routers (``bot_kit.routing``): a plain message or a host's own
button skips every kit filter; everything a kit handler can take still reaches it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiogram import Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message, PhotoSize

from bot_kit.callbacks import BuyOffer
from bot_kit.config import DEFAULT_COMMANDS, BillingConfig
from bot_kit.handlers.gifts import GiftOffer
from bot_kit.handlers.promo import PromoOffer
from bot_kit.payments.subscription_handlers import SubscribeOffer, SubscriptionAction
from bot_kit.routing import CallbackGate, MessageGate
from bot_kit.setup import create_routers
from bot_kit.testing import UpdateFactory, make_bot
from bot_kit.texts import get_text
from tests.bot_kit.helpers import texts_sent

RENAMED = BillingConfig(commands={"paysupport": "help_pay", "buy": "purchase"},
                        balance_command="wallet")


def gate_of(router: Router, kind: type) -> Any:
    [gate] = [f.callback for f in router.observers[
        "message" if kind is MessageGate else "callback_query"]._handler.filters or ()
        if isinstance(f.callback, kind)]
    return gate


def messages(config: BillingConfig) -> list[Message]:
    """Messages of every kind the kit's message filters look at, and plain ones."""
    updates = UpdateFactory()
    names = [n for n in config.commands.values() if n] + ["start"]
    texts = ["hello", "", " ", "hello /buy", "?buy", "/", "/unknown", "/start", "/start gift-x",
             "/start promo-CODE", "/start other", *(f"/{n}" for n in names),
             *(f"/{n}@test_bot" for n in names), *(f"/{n}@other_bot" for n in names),
             *(f"  \n/{n} arg" for n in names), *(f"/{n.upper()}" for n in names)]
    found = [updates.message(t).message for t in texts]
    photo = [PhotoSize(file_id="f", file_unique_id="u", width=1, height=1)]
    found += [updates.message("", caption=c, photo=photo).message
              for c in ("/buy", "/balance@test_bot", "a photo")]
    found += [updates.successful_payment(payload=p, total_amount=1).message
              for p in ("v1.x", "gift-x", "")]
    found += [updates.refunded_payment(payload="v1.x", total_amount=1, charge_id="c").message]
    return [m for m in found if m is not None]


@pytest.mark.parametrize("config", [BillingConfig(), RENAMED], ids=["default", "renamed"])
async def test_the_message_gate_lets_through_everything_a_kit_handler_matches(config):
    bot = make_bot()
    for router in create_routers(config):
        gate = gate_of(router, MessageGate)
        for message in messages(config):
            matched = [(await h.check(message, bot=bot, event_update=None))[0]
                       for h in router.message.handlers]
            if any(matched):
                assert await gate(message), (router.name, message.text, message.caption)


async def test_a_plain_message_is_stopped_by_every_kit_gate():
    updates = UpdateFactory()
    plain = [updates.message(t).message for t in ("hello", "hi /buy", "", "   ")]
    for router in create_routers(RENAMED):
        gate = gate_of(router, MessageGate)
        for message in plain:
            assert not await gate(message), (router.name, message.text)


@pytest.mark.parametrize("config", [BillingConfig(), RENAMED], ids=["default", "renamed"])
async def test_every_kit_command_passes_its_routers_gate(config):
    bot = make_bot()
    updates = UpdateFactory()
    routed = set()
    for router in create_routers(config):
        gate = gate_of(router, MessageGate)
        for name in config.commands.values():
            for text in (f"/{name}", f"/{name}@test_bot", f"/{name} arg"):
                message = updates.message(text).message
                assert message is not None
                if any([(await h.check(message, bot=bot))[0] for h in router.message.handlers]):
                    assert await gate(message)
                    routed.add(name)
    assert routed == {n for n in config.commands.values() if n}
    assert set(config.commands) == set(DEFAULT_COMMANDS)


async def test_the_callback_gate_lets_kit_buttons_through_and_stops_the_hosts():
    updates = UpdateFactory()
    bot = make_bot()
    kit_buttons = [BuyOffer(sku="PACK_10").pack(), GiftOffer(sku="PACK_10").pack(),
                   PromoOffer(code="CODE", sku="PACK_10").pack(), SubscribeOffer(sku="S").pack(),
                   SubscriptionAction(action="cancel", sub=1).pack(), "bk_buy:a:b", "bk_buy"]
    for router in create_routers(BillingConfig()):
        gate = gate_of(router, CallbackGate)
        for data in [*kit_buttons, "host:1", "bk_buyer:1", "", "bk_buy_x"]:
            query: CallbackQuery | None = updates.callback(data or "x").callback_query
            assert query is not None
            if not data:
                query = query.model_copy(update={"data": None})
            matched = [(await h.check(query, bot=bot))[0] for h in router.callback_query.handlers]
            if any(matched):
                assert await gate(query), (router.name, data)
            if not data.startswith("bk_"):
                assert not await gate(query), (router.name, data)


async def test_a_gate_opens_for_a_handler_it_does_not_understand_or_a_sub_router():
    router = create_routers(BillingConfig())[-1]  # /balance
    gate = gate_of(router, MessageGate)
    plain = UpdateFactory().message("hello").message
    assert not await gate(plain)

    @router.message()
    async def anything(message: Message) -> None:
        return None

    assert await gate(plain)  # a handler added later is never skipped

    other = create_routers(BillingConfig())[-1]
    other_gate = gate_of(other, MessageGate)
    other.include_router(Router(name="nested"))
    assert await other_gate(plain)


async def test_the_gates_are_async_filters():
    """No thread hop per update: aiogram sends sync filters through asyncio.to_thread."""
    for router in create_routers(BillingConfig()):
        for observer in router.observers.values():
            assert all(f.awaitable for f in observer._handler.filters or ())


@pytest.mark.django_db(transaction=True)
async def test_a_plain_message_does_not_evaluate_the_kit_command_filters(
        make_dp, bot, session, updates, monkeypatch):
    calls: list[str] = []
    parse = Command.parse_command

    async def counted(self: Command, text: str, bot: Any) -> Any:
        calls.append(text)
        return await parse(self, text=text, bot=bot)

    monkeypatch.setattr(Command, "parse_command", counted)
    host = Router(name="host")
    heard: list[str] = []

    @host.message()
    async def echo(message: Message) -> None:
        heard.append(message.text or "")

    dp = make_dp(RENAMED, host)
    await dp.feed_update(bot, updates.message("hello"))
    assert heard == ["hello"] and calls == []

    await dp.feed_update(bot, updates.message("/help_pay@test_bot"))
    await dp.feed_update(bot, updates.message("/wallet@other_bot"))  # not for this bot: the host's
    assert calls  # a command is parsed by the kit's filters, as before
    assert texts_sent(session) == [get_text("paysupport", "en")]
    assert heard == ["hello", "/wallet@other_bot"]


@pytest.mark.django_db(transaction=True)
async def test_a_caption_command_still_reaches_the_kit(make_dp, bot, session, updates):
    dp = make_dp(replace(RENAMED))
    photo = [PhotoSize(file_id="f", file_unique_id="u", width=1, height=1)]

    await dp.feed_update(bot, updates.message("", caption=" /help_pay", photo=photo))

    assert texts_sent(session) == [get_text("paysupport", "en")]


@pytest.mark.parametrize("config", [BillingConfig(), RENAMED], ids=["default", "renamed"])
async def test_the_merged_router_picks_the_handler_the_feature_routers_picked(config):
    """One router with the features' handlers in order matches what the routers, tried in
    order, matched (first match wins in both)."""
    from bot_kit.handlers import create_core_routers
    from bot_kit.handlers.growth import create_growth_routers
    from bot_kit.payments import create_payment_routers

    bot = make_bot()
    [merged] = create_routers(config)
    features = [*create_growth_routers(config), *create_payment_routers(config),
                *create_core_routers(config)]

    async def first(handlers: list[Any], event: Any) -> Any:
        for handler in handlers:
            if (await handler.check(event, bot=bot))[0]:  # the same code, built afresh
                return f"{handler.callback.__module__}.{handler.callback.__qualname__}"
        return None

    updates = UpdateFactory()
    buttons = [BuyOffer(sku="A").pack(), GiftOffer(sku="A").pack(),
               PromoOffer(code="C", sku="A").pack(), SubscribeOffer(sku="S").pack(),
               SubscriptionAction(action="cancel").pack(), "host:1"]
    cases = [("message", m) for m in messages(config)]
    cases += [("callback_query", updates.callback(d).callback_query) for d in buttons]
    seen = set()
    for name, event in cases:
        expected = None
        for router in features:
            expected = await first(router.observers[name].handlers, event)
            if expected is not None:
                break
        assert await first(merged.observers[name].handlers, event) == expected
        seen.add(expected)
    assert len(seen) >= 15  # most kit handlers were the first match of some case
    for name in ("message", "callback_query", "pre_checkout_query", "subscription"):
        assert [h.callback.__qualname__ for h in merged.observers[name].handlers] == [
            h.callback.__qualname__ for r in features for h in r.observers[name].handlers]
