"""Gifts in chat: ``/gift [SKU]`` buys an offer with Stars for someone else; the buyer gets a
deep link ``https://t.me/<bot>?start=gift-<token>``; the first other user who opens it gets
the offer, and the buyer is told.

The gift's payment goes through the kit's exactly-once confirmation (one ``TelegramPayment``
per charge id; a gift invoice's payload has kind ``g``, so paying grants nothing to the buyer).
This router is placed before the purchase router so that it answers the payments of gift
invoices with the link instead of the ordinary receipt.
"""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, User
from asgiref.sync import sync_to_async

from billable.exceptions import BillableError
from bot_kit import billing
from bot_kit.callbacks import answer_callback, offer_data, offer_sku
from bot_kit.config import BillingConfig
from bot_kit.growth_billing import claim_gift, create_gift_invoice, gift_token_for_order
from bot_kit.payments.handlers import confirm_once, resolve_user_id
from bot_kit.payments.invoices import STARS, apurchasable_offers, send_invoice
from bot_kit.payments.payload import KIND_GIFT, VERSION_BOT
from bot_kit.paywall import format_price
from bot_kit.routing import needs_message_field
from bot_kit.texts import error_text, get_text, pick_language, user_language

logger = logging.getLogger("bot_kit.gifts")
DEEP_LINK_PREFIX = "gift-"


class GiftOffer(CallbackData, prefix="bk_gift"):
    """A "gift this" button."""

    sku: str


class GiftOfferRef(CallbackData, prefix="bk_gifth"):
    """A "gift this" button of an offer whose SKU does not fit ``GiftOffer`` (64 bytes):
    ``ref = sku_ref(sku)`` (see ``bot_kit.callbacks``)."""

    ref: str


def is_gift_payload(payload: object) -> bool:
    """True for the payload of a gift invoice (the signature is checked on confirmation)."""
    parts = str(payload or "").split(".")
    size = 9 if parts[0] == VERSION_BOT else 8  # b2: bound to its bot (docs/multibot.md)
    return len(parts) == size and parts[2] == KIND_GIFT


@needs_message_field("successful_payment")
async def is_gift_payment(message: Message) -> bool:
    """Filter: a ``successful_payment`` for a gift invoice (async: no thread hop per update)."""
    paid = message.successful_payment
    return paid is not None and is_gift_payload(paid.invoice_payload)


async def _lang(lang: str | None, tg_user: User | None, config: BillingConfig) -> str:
    return await user_language(config, tg_user, lang)


async def gift_link(bot: Bot, token: str, config: BillingConfig) -> str:
    """``https://t.me/<bot>?start=gift-<token>`` (username from the config, else ``getMe``)."""
    username = config.bot_username or (await bot.me()).username
    return f"https://t.me/{username}?start={DEEP_LINK_PREFIX}{token}"


async def _giftable(config: BillingConfig) -> list[Any]:
    skus = config.gift_offers or config.offers
    return [o for o in await apurchasable_offers(config, skus) if o.currency.upper() == STARS]


async def _send_gift_invoice(bot: Bot, chat_id: int, tg_user: User, sku: str, user_id: int,
                             lang: str, config: BillingConfig) -> None:
    try:
        request = await sync_to_async(create_gift_invoice)(user_id, tg_user.id, sku, config)
    except BillableError as exc:
        await bot.send_message(chat_id, error_text(exc.code, lang, config), parse_mode=None)
        return
    await send_invoice(bot, chat_id, request)


def _add_buying(router: Router, config: BillingConfig) -> None:
    name = config.command("gift")
    if name is not None:
        router.message(Command(name))(_gift_command(config))

    async def gift_button(query: CallbackQuery, callback_data: GiftOffer | GiftOfferRef,
                          bot: Bot, billing_user_id: int | None = None,
                          billing_lang: str | None = None) -> None:
        await answer_callback(query, bot)
        lang = await _lang(billing_lang, query.from_user, config)
        user_id = await resolve_user_id(billing_user_id, query.from_user, config)
        chat_id = query.message.chat.id if query.message is not None else query.from_user.id
        sku = offer_sku(callback_data, config.gift_offers or config.offers)
        await _send_gift_invoice(bot, chat_id, query.from_user, sku, user_id, lang, config)

    router.callback_query.register(gift_button, GiftOffer.filter())
    router.callback_query.register(gift_button, GiftOfferRef.filter())


def _gift_command(config: BillingConfig) -> Any:
    async def gift(message: Message, command: CommandObject, bot: Bot,
                   billing_user_id: int | None = None, billing_lang: str | None = None) -> None:
        tg_user = message.from_user
        if tg_user is None:
            return
        lang = await _lang(billing_lang, tg_user, config)
        if command.args and command.args.strip():
            user_id = await resolve_user_id(billing_user_id, tg_user, config)
            await _send_gift_invoice(bot, message.chat.id, tg_user, command.args.strip(),
                                     user_id, lang, config)
            return
        offers = await _giftable(config)
        if not offers:
            await message.answer(get_text("gift_empty", lang, config), parse_mode=None)
            return
        rows = [[InlineKeyboardButton(
            text=get_text("buy_button", lang, config, name=o.localized_name(lang),
                          price=format_price(o.price, o.currency)),
            callback_data=offer_data(o.sku, GiftOffer, GiftOfferRef))] for o in offers]
        await message.answer(get_text("gift_catalog", lang, config),
                             reply_markup=InlineKeyboardMarkup(inline_keyboard=rows),
                             parse_mode=None)

    return gift


def _add_payment(router: Router, config: BillingConfig) -> None:
    @router.message(is_gift_payment)
    async def gift_paid(message: Message, bot: Bot, billing_user_id: int | None = None,
                        billing_lang: str | None = None) -> None:
        """Confirm once per charge, then hand the buyer the gift's link."""
        confirmed = await confirm_once(message, bot, config, billing_user_id=billing_user_id,
                                       billing_lang=billing_lang)
        if confirmed is None:
            return
        result, lang = confirmed.result, confirmed.lang
        token = await sync_to_async(gift_token_for_order)(result.order_id)
        expires = await sync_to_async(_expiry_of)(token)
        await message.answer(get_text("gift_ready", lang, config, name=result.summary,
                                      link=await gift_link(bot, str(token), config),
                                      expires=expires), parse_mode=None)


def _expiry_of(token: str | None) -> str:
    when = billing.gift_expiry(token)
    return when.strftime("%Y-%m-%d") if when else "—"


def _add_claiming(router: Router, config: BillingConfig) -> None:
    @router.message(CommandStart(deep_link=True, magic=F.args.startswith(DEEP_LINK_PREFIX)))
    async def claim(message: Message, command: CommandObject, bot: Bot,
                    billing_user_id: int | None = None, billing_lang: str | None = None) -> None:
        """``start=gift-<token>``: first claim wins; the buyer is told."""
        tg_user = message.from_user
        if tg_user is None:
            return
        lang = await _lang(billing_lang, tg_user, config)
        user_id = await resolve_user_id(billing_user_id, tg_user, config)
        token = str(command.args or "").removeprefix(DEEP_LINK_PREFIX)
        try:
            result = await sync_to_async(claim_gift)(token, user_id, tg_user.id,
                                                     provider=config.telegram_provider,
                                                     config=config)
        except BillableError as exc:
            await message.answer(error_text(exc.code, lang, config), parse_mode=None)
            return
        products = ", ".join(f"{n} × {q}" for n, q in sorted(result.granted.items()))
        await message.answer(get_text("gift_received", lang, config, products=products),
                             parse_mode=None)
        if result.buyer_telegram_id is not None:
            await _tell_buyer(bot, result.buyer_telegram_id, result.offer_name,
                              pick_language(result.buyer_language, config), config)


async def _tell_buyer(bot: Bot, chat_id: int, name: str, lang: str,
                      config: BillingConfig) -> None:
    try:
        await bot.send_message(chat_id, get_text("gift_claimed_notice", lang, config, name=name),
                               parse_mode=None)
    except Exception:
        logger.warning("could not tell buyer %s that their gift was claimed", chat_id)


def create_router(config: BillingConfig) -> Router:
    """The gift router (see the module docstring)."""
    router = Router(name="bot_kit.gifts")
    _add_payment(router, config)
    _add_claiming(router, config)
    _add_buying(router, config)
    return router


__all__ = ["DEEP_LINK_PREFIX", "GiftOffer", "GiftOfferRef", "create_router", "gift_link",
           "is_gift_payload"]
