"""Callback data shared by the paywall, the catalog keyboards and the purchase and
subscription flows, and answering a callback query once.

Telegram takes 1-64 **bytes** of callback data. An offer's SKU is up to 50 characters and may
be non-ASCII (two bytes per Cyrillic letter), so ``bk_buy:<sku>`` does not always fit. A button
keeps the SKU form when it fits (every button already sent in old chats has it, and keeps
working) and otherwise carries the SKU's short stable reference ``sku_ref(sku)`` under its own
prefix (``bk_buyh:<ref>``, ``bk_subh:<ref>``). Pressing either form is the same: the handler
turns a reference back into the SKU among the offers it sells (``offer_sku``). Nothing is
refused when an offer is created.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from aiogram.exceptions import TelegramAPIError
from aiogram.filters.callback_data import CallbackData

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.types import CallbackQuery

logger = logging.getLogger("bot_kit.callbacks")

#: Telegram's limit of callback data, in bytes.
MAX_CALLBACK_BYTES = 64


class BuyOffer(CallbackData, prefix="bk_buy"):
    """A "buy" button: pressing it starts the purchase of the offer ``sku``."""

    sku: str


class BuyOfferRef(CallbackData, prefix="bk_buyh"):
    """A "buy" button of an offer whose SKU does not fit ``BuyOffer``: ``ref = sku_ref(sku)``."""

    ref: str


class SubscribeOffer(CallbackData, prefix="bk_sub"):
    """A "subscribe" button (``/subscribe`` catalog or paywall): pressing it sends the invoice
    link of the subscription offer ``sku``."""

    sku: str


class SubscribeOfferRef(CallbackData, prefix="bk_subh"):
    """A "subscribe" button of an offer whose SKU does not fit ``SubscribeOffer``."""

    ref: str


def sku_ref(sku: str) -> str:
    """A short stable reference to ``sku``: 12 URL-safe characters of its SHA-256 (72 bits;
    case and surrounding spaces ignored, as SKUs are stored)."""
    digest = hashlib.sha256(str(sku).strip().upper().encode()).digest()[:9]
    return base64.urlsafe_b64encode(digest).decode()


def offer_data(sku: str, full: Callable[..., CallbackData],
               short: Callable[..., CallbackData], **extra: Any) -> str:
    """Packed callback data of a button for ``sku``: ``full(sku=…)`` when it fits Telegram's
    64 bytes (and the SKU has no separator), else ``short(ref=sku_ref(sku))``; ``extra``
    fields go into both. ``ValueError`` only when even the short form does not fit."""
    try:
        return full(sku=sku, **extra).pack()
    except ValueError:
        return short(ref=sku_ref(sku), **extra).pack()


def buy_data(sku: str) -> str:
    """Callback data of the buy button of ``sku``."""
    return offer_data(sku, BuyOffer, BuyOfferRef)


def subscribe_data(sku: str) -> str:
    """Callback data of the subscribe button of ``sku``."""
    return offer_data(sku, SubscribeOffer, SubscribeOfferRef)


def offer_sku(data: CallbackData, candidates: Iterable[str]) -> str:
    """The SKU a pressed button means: its ``sku`` field, or the candidate whose ``sku_ref`` is
    its ``ref``. An unknown reference is returned as is: the purchase then refuses it as an
    offer that cannot be bought here, like an unknown SKU."""
    sku = getattr(data, "sku", None)
    if sku is not None:
        return str(sku)
    ref = str(getattr(data, "ref", ""))
    for candidate in candidates:
        if sku_ref(candidate) == ref:
            return str(candidate)
    return ref


# -- answering a callback query once ------------------------------------------------------------

#: Per bot session (a bot has one; weak: a closed bot's entry goes with it): the ids of the
#: callback queries the kit answered, newest last.
_ANSWERED: WeakKeyDictionary[Any, OrderedDict[str, None]] = WeakKeyDictionary()
_ANSWERED_KEEP = 10_000


def _answered(bot: Any) -> OrderedDict[str, None]:
    key = getattr(bot, "session", None) or bot
    found = _ANSWERED.get(key)
    if found is None:
        found = _ANSWERED[key] = OrderedDict()
    return found


def was_answered(query: CallbackQuery, bot: Bot | None = None) -> bool:
    """Whether the kit already answered ``query`` through ``bot`` (in this process)."""
    bot = bot or query.bot
    return bot is not None and query.id in _answered(bot)


async def answer_callback(query: CallbackQuery, bot: Bot | None = None, **options: Any) -> bool:
    """Answer ``query`` (stop the button's spinner) unless the kit answered it already.

    Telegram accepts one answer per callback query and refuses a second one ("query is too old
    and response timeout expired or query ID is invalid"). Every kit path answers through this
    function, so a button handler's answer and the error handler's (which tells the user what
    went wrong) never make two. A refusal is logged, never raised: the answer is cosmetic.
    Returns whether this call answered the query.
    """
    bot = bot or query.bot
    if bot is None:
        return False
    answered = _answered(bot)
    if query.id in answered:
        return False
    answered[query.id] = None
    while len(answered) > _ANSWERED_KEEP:
        answered.popitem(last=False)
    try:
        await bot.answer_callback_query(query.id, **options)
    except TelegramAPIError as exc:  # too old (a redelivery), answered by host code …
        logger.info("Could not answer the callback query: %s", exc)
        return False
    return True


__all__ = [
    "MAX_CALLBACK_BYTES",
    "BuyOffer",
    "BuyOfferRef",
    "SubscribeOffer",
    "SubscribeOfferRef",
    "answer_callback",
    "buy_data",
    "offer_data",
    "offer_sku",
    "sku_ref",
    "subscribe_data",
    "was_answered",
]
