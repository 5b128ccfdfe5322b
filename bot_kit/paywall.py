"""The paywall: a localized "you ran out" message with buy (or subscribe) buttons, and reply
helpers."""

from __future__ import annotations

import logging
from collections.abc import Callable
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
from django.utils import timezone

from billable import metrics
from bot_kit import billing
from bot_kit.callbacks import answer_callback, buy_data, subscribe_data
from bot_kit.config import BillingConfig
from bot_kit.events import QuotaEvent, call_host, quota_exhausted
from bot_kit.payments.invoices import apurchasable_offers
from bot_kit.payments.subscriber_paywall import SubscriberPaywall, subscriber_paywall
from bot_kit.texts import get_text, user_language

logger = logging.getLogger("bot_kit.paywall")


def format_price(price: Decimal, currency: str) -> str:
    """``50 ⭐`` for Telegram Stars, ``9.99 USD`` otherwise."""
    if currency.upper() == "XTR":
        return f"{int(price)} ⭐"
    return f"{price} {currency}"


async def _containing(config: BillingConfig, skus: tuple[str, ...] | None,
                      product_key: str) -> list[billing.OfferView]:
    offers = await apurchasable_offers(config, skus)
    containing = await billing.askus_with_product([o.sku for o in offers], product_key)
    return [o for o in offers if o.sku in containing]


async def _paywall_choice(config: BillingConfig, product_key: str
                          ) -> tuple[list[billing.OfferView], list[billing.OfferView]]:
    """``(packs, subscriptions)`` the paywall offers when ``product_key`` ran out; at most one
    of them is non-empty (see ``paywall_offers`` and ``paywall_subscriptions``)."""
    packs = await _containing(config, None, product_key)
    if packs:
        return packs, []
    subscriptions = await _containing(config, config.subscription_offers, product_key)
    if subscriptions or not config.paywall_fallback:
        return [], subscriptions
    return await apurchasable_offers(config, config.paywall_fallback), []


async def paywall_offers(config: BillingConfig, product_key: str) -> list[billing.OfferView]:
    """The packs the paywall sells when ``product_key`` ran out, never an unrelated pack:

    the active, purchasable offers of ``config.offers`` that contain ``product_key``; when
    there are none and no subscription offer contains it either (``paywall_subscriptions``),
    the active ones of ``config.paywall_fallback`` (the host's explicit choice); else nothing.
    Ordered as configured.
    """
    return (await _paywall_choice(config, product_key))[0]


async def paywall_subscriptions(config: BillingConfig,
                                product_key: str) -> list[billing.OfferView]:
    """The subscriptions the paywall offers when ``product_key`` ran out: the purchasable
    offers of ``config.subscription_offers`` that contain it, only when no offer of
    ``config.offers`` does (a pack sold by ``/buy`` comes first). Ordered as configured."""
    return (await _paywall_choice(config, product_key))[1]


def offers_keyboard(offers: list[Any], lang: str,
                    config: BillingConfig) -> InlineKeyboardMarkup | None:
    """One "buy" button per offer (``BuyOffer(sku=...)`` callback data, or ``BuyOfferRef``
    when the SKU does not fit Telegram's 64 bytes: ``bot_kit.callbacks.buy_data``), or
    ``None``."""
    return _keyboard(offers, lang, config, buy_data)


def subscribe_keyboard(offers: list[Any], lang: str,
                       config: BillingConfig) -> InlineKeyboardMarkup | None:
    """One "subscribe" button per subscription offer (``SubscribeOffer(sku=...)`` callback
    data, or ``SubscribeOfferRef`` when the SKU does not fit; answered with the offer's invoice
    link, as in ``/subscribe``), or ``None``."""
    return _keyboard(offers, lang, config, subscribe_data)


def _keyboard(offers: list[Any], lang: str, config: BillingConfig,
              callback: Callable[[str], str]) -> InlineKeyboardMarkup | None:
    if not offers:
        return None
    rows = [[InlineKeyboardButton(
        text=get_text("buy_button", lang, config, name=o.localized_name(lang),
                      price=format_price(o.price, o.currency)),
        callback_data=callback(o.sku),
    )] for o in offers]
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def product_name(product_key: str, lang: str | None = None) -> str:
    """The product's display name in ``lang`` (default language, then its key, as fallback)."""
    return await billing.aproduct_name(product_key, lang)


async def send_paywall(event: TelegramObject, bot: Bot, *, product_key: str, lang: str,
                       config: BillingConfig, user_id: int | None = None) -> None:
    """Tell the user they ran out of ``product_key`` and offer what to buy.

    A product sold only as a subscription gets ``paywall_subscribe`` with subscribe buttons.
    A user whose subscription containing the product still runs is told when it renews (or
    ends) and is not offered it again (``bot_kit.payments.subscriber_paywall``).
    When the product came from a Stars subscription that has ended, the user reads that the
    subscription ended (and how to renew) instead. ``on_quota_exhausted`` is called once.
    """
    metrics.record_paywall(product_key.upper(), channel="telegram")
    tg_user = getattr(event, "from_user", None)
    lang = await user_language(config, tg_user, lang)
    offers, subscriptions = await _paywall_choice(config, product_key)
    name = await product_name(product_key, lang)
    subscriber = await _subscriber_paywall(tg_user, product_key, name, lang, config)
    if subscriber is not None:
        text: str | None = subscriber.text
        offers, subscriptions = subscriber.packs, subscriber.subscriptions
    else:
        text = await _expired_text(tg_user, product_key, lang, config)
    if text is None:
        key = ("paywall" if offers else "paywall_subscribe" if subscriptions
               else "paywall_no_offers")
        text = get_text(key, lang, config, product=name)
    markup = (offers_keyboard(offers, lang, config) if offers
              else subscribe_keyboard(subscriptions, lang, config))
    await notify(event, bot, text, reply_markup=markup)
    quota_event = QuotaEvent(telegram_user_id=getattr(tg_user, "id", None), user_id=user_id,
                             product_key=product_key.upper())
    quota_exhausted.send(sender=QuotaEvent, event=quota_event)
    await call_host(config.on_quota_exhausted, quota_event)


async def _subscriber_paywall(tg_user: Any, product_key: str, product: str, lang: str,
                              config: BillingConfig) -> SubscriberPaywall | None:
    """The paywall of a user whose subscription containing ``product_key`` still runs (see
    ``bot_kit.payments.subscriber_paywall``), or ``None``."""
    if tg_user is None or not config.subscription_offers:
        return None
    subscriptions = await _containing(config, config.subscription_offers, product_key)
    if not subscriptions:
        return None
    return await subscriber_paywall(tg_user.id, subscriptions=subscriptions,
                                    packs=await _containing(config, None, product_key),
                                    product=product, lang=lang, config=config)


async def _expired_text(tg_user: Any, product_key: str, lang: str,
                        config: BillingConfig) -> str | None:
    """"Your subscription X ended on D" when an ended subscription granted ``product_key``."""
    # app registry: bot_kit.models needs it; the paywall module itself imports without
    from bot_kit.models import StarSubscription

    if tg_user is None:
        return None
    ended = [s async for s in StarSubscription.objects.filter(
        telegram_user_id=tg_user.id, expires_at__lte=timezone.now())]
    for subscription in ended:
        offer = await billing.aoffer_with_product(subscription.sku, product_key)
        if offer is not None:
            return get_text("subscription_expired", lang, config,
                            name=offer.localized_name(lang),
                            expires=subscription.expires_at.strftime("%Y-%m-%d")
                            if subscription.expires_at else "—")
    return None


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

    A callback query the handler answered already (Telegram refuses a second answer) still gets
    the text. A Bot API refusal (the user blocked the bot, never opened a private chat …) is
    logged, not raised: telling the user is best effort. Returns whether the message was sent.
    """
    if isinstance(event, CallbackQuery):  # once: a kit handler may have answered it
        await answer_callback(event, bot)  # a refusal is logged; the text still goes
    try:
        chat_id = chat_id_of(event)
        if chat_id is None:
            return False
        await bot.send_message(chat_id=chat_id, text=text, reply_markup=reply_markup,
                               parse_mode=None)
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
    "paywall_subscriptions",
    "product_name",
    "send_paywall",
    "subscribe_keyboard",
]
