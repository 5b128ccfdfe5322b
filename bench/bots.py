"""The bots under test: dispatchers built the way a host builds them, and their update feeds.

This is the one place that knows how to assemble each bot (``bench/bot.py`` and the users
curve use it), so a change of the kit's wiring is followed here only:

* ``bare``      — aiogram alone: one no-op message handler;
* ``identity``  — the same handler behind the kit's identity middleware alone, on ``dp.update``;
* ``kit``       — the same handler behind ``setup_billing`` (identity, quota middleware and the
  kit's own routers tried first);
* ``gated``     — ``setup_billing`` plus a ``@requires_quota`` handler: hold, handler, charge.
* ``charged``   — ``setup_billing`` plus a plain handler that charges by hand with
  ``aconsume_quota`` under the update's key (what a host writes without the decorator: one
  statement, but the handler's work is not protected by a hold and is charged even if it fails).
* ``floor``     — the physical floor of a gated update (PostgreSQL): aiogram alone, and a
  handler that sends the gated fast path's own two statements — the hold under the update's
  key, then its settlement — on one dedicated raw async connection. The same rows as a gated
  update, with no kit, no service layer, no pool and no fallback rules around them.

Updates are fed the way the kit's production path feeds them (``bot_kit/inbox/worker.py``, and
aiogram's polling likewise): the update arrives as Telegram's JSON, is parsed **bound to the
bot** (``Update.model_validate(payload, context={"bot": bot})``) and handed to
``dp.feed_update``. A :class:`Feed` builds the JSON payloads before they are timed (its
``prepare()`` tops a queue up between slices; ``bench.interleave`` calls it outside the timed
part) and pays the parse inside the timing, as production does. Feeding an ``Update`` object
that is not bound to the bot would make aiogram dump and re-parse it on every update
(``feed_update``'s re-mount), a cost no production path pays.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from bench.common import credit, make_product, make_users

#: Telegram user id of the known user of the bot benchmarks.
KNOWN_TG_ID = 777_000_001


def dispatcher(kind: str, *, key: str = "", config: Any = None, cache: Any = None,
               fsm: bool = True) -> Any:
    """A Dispatcher of ``kind`` (see the module docstring); ``fsm=False`` turns off aiogram's
    FSM (its in-memory storage keeps an entry per user ever seen)."""
    from aiogram import Dispatcher, Router
    from aiogram.types import Message

    from bot_kit import BillingConfig, requires_quota, setup_billing

    config = config or BillingConfig()
    dp = Dispatcher(disable_fsm=not fsm)
    if kind == "identity":
        from bot_kit.middlewares.identity import (
            IdentityMiddleware,
            _connect_signals,
            start_identity_listener,
            stop_identity_listener,
        )

        _connect_signals()
        dp.update.outer_middleware(IdentityMiddleware(config, cache=cache))
        # as setup_billing does: the identity notices listener runs while the bot polls
        dp.startup.register(start_identity_listener)
        dp.shutdown.register(stop_identity_listener)
    elif kind in ("kit", "gated", "charged"):
        setup_billing(dp, config, cache=cache)
    elif kind not in ("bare", "floor"):
        raise ValueError(f"unknown bot kind {kind!r}")
    router = Router()
    if kind == "floor":
        floor = GatedFloor(key)

        @router.message()
        async def floored(message: Message) -> None:
            await floor.charge(f"floor:{message.chat.id}:{message.message_id}")
    elif kind == "gated":
        @router.message()
        @requires_quota(key)
        async def gated(message: Message) -> None:
            return None
    elif kind == "charged":
        from billable.services import TransactionService

        @router.message()
        async def charged(message: Message, billing_user_id: int) -> None:
            await TransactionService.aconsume_quota(
                billing_user_id, key, idempotency_key=f"tg:{message.chat.id}:{message.message_id}")
    else:
        @router.message()
        async def plain(message: Message) -> None:
            return None
    dp.include_router(router)
    return dp


class GatedFloor:
    """The gated fast path's hold and settle statements, sent as they are on one raw async
    connection of the running loop (opened on first use): a gated update's floor."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.user_id: Any = None
        self.conn: Any = None
        self.statements: Any = None

    async def _connect(self) -> None:
        import psycopg
        from asgiref.sync import sync_to_async

        from billable.conf import billable_settings
        from billable.ledger import apool, sql
        from billable.models import ExternalIdentity

        self.statements = await sync_to_async(sql.fast_statements)(
            "default", str(billable_settings.CONSUMPTION_ORDER))
        self.user_id = await ExternalIdentity.objects.filter(
            provider="telegram", external_id=str(KNOWN_TG_ID)).values_list(
                "user_id", flat=True).aget()
        self.conn = await psycopg.AsyncConnection.connect(**apool._params("default"))
        _FLOORS.append(self)

    async def charge(self, idempotency_key: str) -> None:
        """Hold one unit under ``idempotency_key``, then settle it (two autocommit
        statements); raises when either wrote nothing."""
        import psycopg
        from django.utils import timezone
        from psycopg.types.json import Jsonb

        from billable.models.base import uuid7

        if self.conn is None:
            await self._connect()
        rid, now = uuid7(), timezone.now()
        cursor = psycopg.AsyncRawCursor(self.conn)
        await cursor.execute(self.statements.hold, (
            self.user_id, idempotency_key, "floor", now, self.key, 1, rid, "usage", Jsonb({}),
            now + FLOOR_TTL))
        placed = await cursor.fetchall()
        await cursor.execute(self.statements.settle, (rid, timezone.now()))
        settled = await cursor.fetchall()
        if placed[0][1] != 1 or len(settled) != 1:
            raise RuntimeError(f"gated floor wrote nothing for {idempotency_key}")

    async def aclose(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None


#: Floors with an open connection (closed by :func:`shutdown`).
_FLOORS: list[GatedFloor] = []

#: How long a floor's hold would live (it is settled at once).
FLOOR_TTL = timedelta(minutes=5)


def parse(payload: dict[str, Any], bot: Any) -> Any:
    """An update's JSON parsed bound to ``bot`` (what the inbox worker and polling do)."""
    from aiogram.types import Update

    return Update.model_validate(payload, context={"bot": bot})


async def deliver(dp: Any, bot: Any, payloads: Iterable[dict[str, Any]]) -> None:
    """Parse and feed each payload in turn, as the kit's inbox worker does."""
    for payload in payloads:
        await dp.feed_update(bot, parse(payload, bot))


class Feed:
    """Ready-made message updates (Telegram's JSON) for one dispatcher, from ``users(i)`` for
    the i-th update."""

    def __init__(self, dp: Any, users: Callable[[int], int], *, factory: Any = None,
                 bot: Any = None) -> None:
        from bot_kit.testing import UpdateFactory, make_bot

        self.dp = dp
        self.users = users
        self.factory = factory or UpdateFactory()
        self.bot = bot or make_bot()
        self.queue: deque[Any] = deque()
        self.sent = 0
        self._people: dict[int, Any] = {}
        self.batch = 32

    def _user(self, tg_id: int) -> Any:
        person = self._people.get(tg_id)
        if person is None:
            person = self.factory.user(tg_id)
            if len(self._people) < 1024:
                self._people[tg_id] = person
        return person

    def payload(self, tg_id: int, text: str = "go") -> dict[str, Any]:
        """A message update from ``tg_id`` as Telegram sends it (JSON, the next update id)."""
        from bot_kit.testing.updates import update_to_json

        return update_to_json(self.factory.message(text, user=self._user(tg_id)))

    def prepare(self) -> None:
        """Top the queue up to ``batch`` payloads (the batch doubles whenever a slice ran the
        queue dry, so after a few slices every payload is built outside the timing)."""
        while len(self.queue) < self.batch:
            index = self.sent + len(self.queue)
            self.queue.append(self.payload(self.users(index)))

    async def send(self) -> None:
        """Parse the next payload bound to the bot and feed it (built on the spot if the queue
        ran dry)."""
        if self.dp not in _STARTED:
            await start_dispatcher(self.dp, self.bot)
        if not self.queue:
            self.prepare()
        payload = self.queue.popleft()
        self.sent += 1
        await self.dp.feed_update(self.bot, parse(payload, self.bot))
        if not self.queue:
            self.batch = min(self.batch * 2, 4096)


#: Dispatchers whose startup ran (the bot of the first feed that sent through each).
_STARTED: dict[Any, Any] = {}


async def start_dispatcher(dp: Any, bot: Any) -> None:
    """What polling does first: the dispatcher's startup (the kit's identity listener, waited
    for until connected)."""
    from bot_kit.middlewares.identity import LISTENER

    _STARTED[dp] = bot
    await dp.emit_startup(bot=bot)
    await LISTENER.wait_live()


async def shutdown() -> None:
    """The shutdown of every started dispatcher (closes the identity listener); run it on the
    loop the feeds ran on, before it closes."""
    while _STARTED:
        dp, bot = _STARTED.popitem()
        await dp.emit_shutdown(bot=bot)
    while _FLOORS:
        await _FLOORS.pop().aclose()


def prepare_known_user(key: str, *, balance: int = 10**9) -> Any:
    """The known user of the bot benchmarks: an account with a Telegram identity and a large
    balance of ``key``."""
    from billable.models import ExternalIdentity

    [user] = make_users(1, prefix="botbench")
    credit(user, make_product(key), balance)
    ExternalIdentity.objects.create(provider="telegram", external_id=str(KNOWN_TG_ID), user=user)
    return user


__all__ = ["KNOWN_TG_ID", "Feed", "GatedFloor", "deliver", "dispatcher", "parse",
           "prepare_known_user", "shutdown", "start_dispatcher"]
