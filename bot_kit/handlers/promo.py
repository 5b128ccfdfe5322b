"""``/promo CODE [SKU]`` and the deep link ``https://t.me/<bot>?start=promo-CODE``.

A grant code grants its offer at once; a discount code sends an invoice at the discounted
price whose signed payload carries the promo reservation and the discount (pre-checkout
re-checks both). A discount code valid for any offer first shows the offers to pick from.
Codes are used once per Telegram identity; refusals are localized (``error_promo_*``).
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
from bot_kit.callbacks import answer_callback, offer_data, offer_sku
from bot_kit.config import BillingConfig
from bot_kit.growth_billing import promo_needs_offer, redeem_promo
from bot_kit.payments.handlers import resolve_user_id
from bot_kit.payments.invoices import apurchasable_offers, send_invoice
from bot_kit.paywall import format_price
from bot_kit.texts import error_text, get_text, user_language

logger = logging.getLogger("bot_kit.promo")
DEEP_LINK_PREFIX = "promo-"


class PromoOffer(CallbackData, prefix="bk_promo"):
    """Pick the offer a discount code applies to."""

    code: str
    sku: str


class PromoOfferRef(CallbackData, prefix="bk_promoh"):
    """``PromoOffer`` of an offer whose SKU does not fit 64 bytes with the code:
    ``ref = sku_ref(sku)`` (see ``bot_kit.callbacks``)."""

    code: str
    ref: str


async def _lang(lang: str | None, tg_user: User | None, config: BillingConfig) -> str:
    return await user_language(config, tg_user, lang)


def _products(granted: dict[str, int]) -> str:
    return ", ".join(f"{name} × {qty}" for name, qty in sorted(granted.items()))


async def _choose_offer(bot: Bot, chat_id: int, code: str, lang: str,
                        config: BillingConfig) -> None:
    rows = []
    for offer in await apurchasable_offers(config):
        try:
            packed = offer_data(offer.sku, PromoOffer, PromoOfferRef, code=code)
        except ValueError:  # a code so long that even the short form exceeds 64 bytes
            continue
        rows.append([InlineKeyboardButton(
            text=get_text("buy_button", lang, config, name=offer.localized_name(lang),
                          price=format_price(offer.price, offer.currency)),
            callback_data=packed)])
    await bot.send_message(chat_id, get_text("promo_choose_offer", lang, config,
                                             code=code.upper()),
                           reply_markup=InlineKeyboardMarkup(inline_keyboard=rows), parse_mode=None)


async def apply_code(bot: Bot, chat_id: int, tg_user: User, code: str, *, sku: str | None,
                     user_id: int, lang: str, config: BillingConfig) -> None:
    """Redeem ``code`` for the user and answer in ``chat_id`` (invoice, grant or refusal)."""
    description = get_text("promo_invoice_description", lang, config)
    try:
        if sku is None and await sync_to_async(promo_needs_offer)(code):
            await _choose_offer(bot, chat_id, code, lang, config)
            return
        outcome = await sync_to_async(redeem_promo)(
            user_id, tg_user.id, code, config, sku=sku,
            description=description)
    except BillableError as exc:
        await bot.send_message(chat_id, error_text(exc.code, lang, config), parse_mode=None)
        return
    if outcome.invoice is not None:
        await send_invoice(bot, chat_id, outcome.invoice)
        return
    await bot.send_message(chat_id, get_text("promo_granted", lang, config, code=outcome.code,
                                             products=_products(outcome.granted)), parse_mode=None)


def _add_command(router: Router, name: str, config: BillingConfig) -> None:
    @router.message(Command(name))
    async def promo(message: Message, command: CommandObject, bot: Bot,
                    billing_user_id: int | None = None, billing_lang: str | None = None) -> None:
        tg_user = message.from_user
        if tg_user is None:
            return
        lang = await _lang(billing_lang, tg_user, config)
        args = (command.args or "").split()
        if not args:
            await message.answer(get_text("promo_usage", lang, config), parse_mode=None)
            return
        user_id = await resolve_user_id(billing_user_id, tg_user, config)
        await apply_code(bot, message.chat.id, tg_user, args[0],
                         sku=args[1] if len(args) > 1 else None, user_id=user_id, lang=lang,
                         config=config)


def create_router(config: BillingConfig) -> Router:
    """The router of ``/promo`` (``config.command("promo")``; ``None`` disables the command)
    and of the ``start=promo-…`` deep link."""
    router = Router(name="bot_kit.promo")
    name = config.command("promo")
    if name is not None:
        _add_command(router, name, config)

    @router.message(CommandStart(deep_link=True,
                                 magic=F.args.startswith(DEEP_LINK_PREFIX)))
    async def promo_link(message: Message, command: CommandObject, bot: Bot,
                         billing_user_id: int | None = None,
                         billing_lang: str | None = None) -> None:
        tg_user = message.from_user
        if tg_user is None:
            return
        lang = await _lang(billing_lang, tg_user, config)
        user_id = await resolve_user_id(billing_user_id, tg_user, config)
        code = str(command.args or "").removeprefix(DEEP_LINK_PREFIX)
        await apply_code(bot, message.chat.id, tg_user, code, sku=None, user_id=user_id,
                         lang=lang, config=config)

    async def promo_offer(query: CallbackQuery, callback_data: PromoOffer | PromoOfferRef,
                          bot: Bot, billing_user_id: int | None = None,
                          billing_lang: str | None = None) -> Any:
        await answer_callback(query, bot)
        lang = await _lang(billing_lang, query.from_user, config)
        user_id = await resolve_user_id(billing_user_id, query.from_user, config)
        chat_id = query.message.chat.id if query.message is not None else query.from_user.id
        await apply_code(bot, chat_id, query.from_user, callback_data.code,
                         sku=offer_sku(callback_data, config.offers), user_id=user_id,
                         lang=lang, config=config)

    router.callback_query.register(promo_offer, PromoOffer.filter())
    router.callback_query.register(promo_offer, PromoOfferRef.filter())

    return router


__all__ = ["DEEP_LINK_PREFIX", "PromoOffer", "PromoOfferRef", "apply_code", "create_router"]
