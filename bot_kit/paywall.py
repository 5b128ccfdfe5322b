"""The paywall: a localized "you ran out" message with buy buttons, and reply helpers."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    TelegramObject,
)

from billable import metrics
from bot_kit import billing
from bot_kit.callbacks import BuyOffer
from bot_kit.config import BillingConfig
from bot_kit.texts import get_text

logger = logging.getLogger("bot_kit.paywall")


def format_price(price: Decimal, currency: str) -> str:
    """``50 ⭐`` for Telegram Stars, ``9.99 USD`` otherwise."""
    if currency.upper() == "XTR":
        return f"{int(price)} ⭐"
    return f"{price} {currency}"


async def paywall_offers(config: BillingConfig, product_key: str) -> list[billing.OfferView]:
    """Active configured offers that contain ``product_key`` (all configured ones if none do),
    in the order of ``config.offers``."""
    return await billing.aoffers_with_product(config.offers, product_key)


def offers_keyboard(offers: list[Any], lang: str,
                    config: BillingConfig) -> InlineKeyboardMarkup | None:
    """One "buy" button per offer (``BuyOffer(sku=...)`` callback data), or ``None``."""
    if not offers:
        return None
    rows = [[InlineKeyboardButton(
        text=get_text("buy_button", lang, config, name=o.name,
                      price=format_price(o.price, o.currency)),
        callback_data=BuyOffer(sku=o.sku).pack(),
    )] for o in offers]
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def product_name(product_key: str) -> str:
    """The product's display name (its key when unknown)."""
    return await billing.aproduct_name(product_key)


async def send_paywall(event: TelegramObject, bot: Bot, *, product_key: str, lang: str,
                       config: BillingConfig) -> None:
    """Tell the user they ran out of ``product_key`` and offer what to buy."""
    metrics.record_paywall(product_key.upper(), channel="telegram")
    offers = await paywall_offers(config, product_key)
    name = await product_name(product_key)
    key = "paywall" if offers else "paywall_no_offers"
    text = get_text(key, lang, config, product=name)
    await notify(event, bot, text, reply_markup=offers_keyboard(offers, lang, config))


def chat_id_of(event: TelegramObject) -> int | None:
    """Where to answer an event: its chat, or the user's private chat."""
    if isinstance(event, Message):
        return event.chat.id
    if isinstance(event, CallbackQuery) and isinstance(event.message, Message):
        return event.message.chat.id
    user = getattr(event, "from_user", None) or getattr(event, "user", None)
    return user.id if user is not None else None


async def notify(event: TelegramObject, bot: Bot, text: str, *,
                 reply_markup: InlineKeyboardMarkup | None = None) -> bool:
    """Send ``text`` to the user behind ``event`` (and stop a callback button's spinner).

    A Bot API refusal (the user blocked the bot, never opened a private chat …) is logged, not
    raised: telling the user is best effort. Returns whether the message was sent.
    """
    try:
        if isinstance(event, CallbackQuery):
            await bot.answer_callback_query(event.id)
        chat_id = chat_id_of(event)
        if chat_id is None:
            return False
        await bot.send_message(chat_id=chat_id, text=text, reply_markup=reply_markup)
    except TelegramAPIError as exc:
        logger.warning("Could not notify the user: %s", exc)
        return False
    return True


__all__ = [
    "chat_id_of",
    "format_price",
    "notify",
    "offers_keyboard",
    "paywall_offers",
    "product_name",
    "send_paywall",
]
