"""The subscription router: ``/subscribe``, its buttons and Telegram ``subscription`` updates."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Bot, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    BotSubscriptionUpdated,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    User,
)
from django.utils import timezone

from bot_kit.callbacks import SubscribeOffer, SubscribeOfferRef, answer_callback, offer_sku
from bot_kit.config import BillingConfig
from bot_kit.models import StarSubscription
from bot_kit.notices import format_date, offer_name, subscription_changed
from bot_kit.payments.errors import AlreadySubscribed
from bot_kit.payments.handlers import language, resolve_user_id
from bot_kit.payments.invoices import apurchasable_offers, from_minor_units
from bot_kit.payments.payload import issuing_bot
from bot_kit.payments.subscriptions import (
    aapply_subscription_update,
    alatest_subscription,
    aprepare_subscription,
    belongs_to,
    create_subscription_link,
    set_subscription_canceled,
)
from bot_kit.paywall import format_price, subscribe_keyboard
from bot_kit.texts import get_text, period_text

logger = logging.getLogger("bot_kit.payments")


class SubscriptionAction(CallbackData, prefix="bk_subact"):
    """Cancel (``cancel``) or re-enable (``resume``) the user's subscription ``sub``
    (its id; 0 = the latest)."""

    action: str
    sub: int = 0


def _expires(subscription: StarSubscription) -> str:
    return format_date(subscription.expires_at)


def _is_current(subscription: StarSubscription | None) -> bool:
    return subscription is not None and (subscription.expires_at is None
                                         or subscription.expires_at > timezone.now())


async def _send_link(bot: Bot, chat_id: int, tg_user: User, sku: str, *, user_id: int,
                     lang: str, config: BillingConfig) -> None:
    try:
        request = await aprepare_subscription(user_id, tg_user.id, sku, config, lang)
    except AlreadySubscribed:
        await bot.send_message(chat_id=chat_id,
                               text=get_text("precheckout_already_subscribed", lang, config),
                               parse_mode=None)
        return
    link = await create_subscription_link(bot, request, config.subscription_period)
    amount = format_price(from_minor_units(request.amount, request.currency), request.currency)
    button = InlineKeyboardButton(text=get_text("subscribe_button", lang, config), url=link)
    text = get_text("subscribe_link", lang, config, name=request.title, amount=amount,
                    period=period_text(config.subscription_period, lang, config))
    await bot.send_message(chat_id=chat_id, text=text,
                           reply_markup=InlineKeyboardMarkup(inline_keyboard=[[button]]),
                           parse_mode=None)


def _status_markup(subscription: StarSubscription, lang: str,
                   config: BillingConfig) -> InlineKeyboardMarkup:
    canceled = subscription.state == StarSubscription.State.CANCELED
    key = "subscription_resume_button" if canceled else "subscription_cancel_button"
    action = SubscriptionAction(action="resume" if canceled else "cancel",
                                sub=subscription.pk).pack()
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(
        text=get_text(key, lang, config), callback_data=action)]])


async def _offer_subscriptions(message: Message, bot: Bot, tg_user: User, args: str | None, *,
                               lang: str, billing_user_id: int | None,
                               config: BillingConfig) -> None:
    """One offer (or the one named): send its link; several: a keyboard to choose from."""
    offers = await apurchasable_offers(config, config.subscription_offers)
    skus = [args.strip()] if args and args.strip() else [o.sku for o in offers]
    if len(skus) == 1:
        user_id = await resolve_user_id(billing_user_id, tg_user, config)
        await _send_link(bot, message.chat.id, tg_user, skus[0], user_id=user_id, lang=lang,
                         config=config)
        return
    if not offers:
        await message.answer(get_text("subscribe_empty", lang, config), parse_mode=None)
        return
    await message.answer(get_text("subscribe_catalog", lang, config),
                         reply_markup=subscribe_keyboard(offers, lang, config), parse_mode=None)


def _add_subscribe(router: Router, config: BillingConfig) -> None:
    name = config.command("subscribe")
    if name is not None:
        router.message.register(_subscribe_command(config), Command(name))

    async def subscribe_button(query: CallbackQuery,
                               callback_data: SubscribeOffer | SubscribeOfferRef, bot: Bot,
                               billing_user_id: int | None = None,
                               billing_lang: str | None = None) -> None:
        """A subscription offer was chosen (the SKU form or the short reference of a long
        SKU): send its invoice link."""
        await answer_callback(query, bot)
        user_id = await resolve_user_id(billing_user_id, query.from_user, config)
        chat_id = query.message.chat.id if query.message is not None else query.from_user.id
        await _send_link(bot, chat_id, query.from_user,
                         offer_sku(callback_data, config.subscription_offers), user_id=user_id,
                         lang=await language(billing_lang, query.from_user, config),
                         config=config)

    router.callback_query.register(subscribe_button, SubscribeOffer.filter())
    router.callback_query.register(subscribe_button, SubscribeOfferRef.filter())


def _subscribe_command(config: BillingConfig) -> Callable[..., Awaitable[None]]:
    async def subscribe(message: Message, command: CommandObject, bot: Bot,
                        billing_user_id: int | None = None,
                        billing_lang: str | None = None) -> None:
        """Show the current subscription (with cancel / re-enable) or offer one."""
        tg_user = message.from_user
        if tg_user is None:
            return
        lang = await language(billing_lang, tg_user, config)
        current = await alatest_subscription(tg_user.id)
        if current is not None and _is_current(current) and not command.args:
            await message.answer(
                get_text("subscription_status", lang, config,
                         name=await offer_name(current.sku, lang),
                         state=get_text(f"subscription_state_{current.state}", lang, config),
                         expires=_expires(current)),
                reply_markup=_status_markup(current, lang, config)
                if belongs_to(current, config.bot_id) else None, parse_mode=None)
            return
        await _offer_subscriptions(message, bot, tg_user, command.args, lang=lang,
                                   billing_user_id=billing_user_id, config=config)

    return subscribe


def _add_management(router: Router, config: BillingConfig) -> None:
    @router.callback_query(SubscriptionAction.filter())
    async def change(query: CallbackQuery, callback_data: SubscriptionAction, bot: Bot,
                     billing_lang: str | None = None) -> None:
        """Cancel or re-enable through ``editUserStarSubscription``."""
        await answer_callback(query, bot)
        lang = await language(billing_lang, query.from_user, config)
        canceled = callback_data.action == "cancel"
        try:
            subscription, event = await set_subscription_canceled(
                bot, query.from_user.id, canceled=canceled,
                subscription_id=callback_data.sub or None)
        except TelegramBadRequest as refused:
            # Telegram refused (the subscription ended, the user cancelled it in Telegram …):
            # nothing was changed, so say so plainly instead of failing the update.
            logger.warning("editUserStarSubscription refused for user %s: %s",
                           query.from_user.id, refused.message)
            await bot.send_message(chat_id=query.from_user.id, parse_mode=None,
                                   text=get_text("subscription_change_refused", lang, config))
            return
        key = "subscription_canceled" if canceled else "subscription_resumed"
        await bot.send_message(chat_id=query.from_user.id,
                               text=get_text(key, lang, config,
                                             expires=_expires(subscription)), parse_mode=None)
        if event is not None:  # the user got the answer above; tell the host
            await subscription_changed(bot, config, event, lang=lang, tell_user=False)

    @router.subscription()
    async def subscription_updated(update: BotSubscriptionUpdated, bot: Bot,
                                   billing_lang: str | None = None, **_: Any) -> None:
        """Record Telegram's canceled / active / failed state; tell the user and the host
        once per change (a redelivered update changes nothing and says nothing)."""
        issuer = issuing_bot(update.invoice_payload)
        if config.bot_id is not None and issuer is not None and issuer != config.bot_id:
            logger.warning("subscription update of bot %s received by bot %s: ignored",
                           issuer, config.bot_id)
            return
        _changed, event = await aapply_subscription_update(update.user.id, update.invoice_payload,
                                                           update.state)
        if event is not None:
            await subscription_changed(bot, config, event,
                                       lang=await language(billing_lang, update.user, config))


def create_subscription_router(config: BillingConfig) -> Router:
    """The router of Stars subscriptions (see the module docstring)."""
    router = Router(name="bot_kit.subscriptions")
    _add_subscribe(router, config)
    _add_management(router, config)
    return router


__all__ = ["SubscribeOffer", "SubscriptionAction", "create_subscription_router"]
