"""Telling the user and the host what happened to their money: refunds, subscription changes.

Every function here is called once per event (the services report whether they made the
change, see ``bot_kit.events``); sending is best effort: a Bot API refusal is logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aiogram.exceptions import TelegramAPIError
from aiogram.types import User
from asgiref.sync import sync_to_async
from django.db import close_old_connections

from bot_kit import billing
from bot_kit.events import RefundEvent, SubscriptionEvent, call_host
from bot_kit.resilience import describe, is_transient
from bot_kit.texts import get_text, user_language

if TYPE_CHECKING:
    from aiogram import Bot

    from bot_kit.config import BillingConfig

logger = logging.getLogger("bot_kit.notices")
T = TypeVar("T")

#: Subscription change reason → the text that tells the user (none for the ones the user caused
#: in the chat and already got an answer for).
SUBSCRIPTION_TEXTS = {
    "canceled": "subscription_canceled_notice",
    "failed": "subscription_failed",
    "resumed": "subscription_resumed",
    "refunded": "subscription_refund_canceled",
}


def format_date(value: Any) -> str:
    """A date as ``YYYY-MM-DD`` (``—`` when unknown): digits read the same in any language."""
    return value.strftime("%Y-%m-%d") if value is not None else "—"


def _stored_user(telegram_user_id: int, provider: str) -> Any:
    """An aiogram ``User`` rebuilt from the profile the identity middleware stored."""
    profile = billing.identity_profile(provider, str(telegram_user_id))
    return User(id=telegram_user_id, is_bot=False,
                first_name=str(profile.get("first_name") or "-"),
                language_code=profile.get("language_code"))


async def language_of(config: BillingConfig, telegram_user_id: int, tg_user: Any = None,
                      injected: str | None = None) -> str:
    """``user_language`` for a user we may only know by id (outside an update's handler)."""
    if tg_user is None:
        try:
            tg_user = await sync_to_async(_stored_user)(telegram_user_id,
                                                        config.telegram_provider)
        except Exception:
            logger.exception("could not read the stored profile of %s", telegram_user_id)
    return await user_language(config, tg_user, injected)


async def tell(bot: Bot, chat_id: int, text: str) -> bool:
    """Send ``text``; a Bot API refusal (blocked bot …) is logged, not raised."""
    try:
        await bot.send_message(chat_id=chat_id, text=text, parse_mode=None)
    except TelegramAPIError as exc:
        logger.warning("could not tell %s: %s", chat_id, exc)
        return False
    return True


async def offer_name(sku: str, lang: str) -> str:
    """The offer's name in ``lang`` (its SKU when unknown)."""
    return await billing.aoffer_name(sku, lang)


async def subscription_changed(bot: Bot, config: BillingConfig, event: SubscriptionEvent, *,
                               lang: str | None = None, tell_user: bool = True) -> None:
    """Tell the user about a subscription change (when there is a text for it) and call
    ``on_subscription_changed``."""
    key = SUBSCRIPTION_TEXTS.get(event.reason)
    if tell_user and key is not None:
        lang = lang or await language_of(config, event.telegram_user_id)
        text = get_text(key, lang, config, name=await offer_name(event.sku, lang),
                        expires=format_date(event.expires_at))
        await tell(bot, event.telegram_user_id, text)
    await call_host(config.on_subscription_changed, event)


async def _with_db_retries(step: Callable[[], Awaitable[T]]) -> T:
    """Run ``step`` again (on a fresh connection) when the database blips: the steps given here
    only read, or are idempotent, so a repeat never tells or cancels twice."""
    for attempt in range(1, 4):
        try:
            return await step()
        except Exception as exc:
            if attempt == 3 or not is_transient(exc):
                raise
            logger.warning("a refund notice step failed (%s); retrying", describe(exc))
            await sync_to_async(close_old_connections)()
            await asyncio.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


async def after_refund(bot: Bot, config: BillingConfig, event: RefundEvent, *,
                       lang: str | None = None) -> None:
    """A payment was refunded (once): tell the user, call ``on_refunded`` and, for a charge
    of a Stars subscription, cancel that subscription at Telegram so it stops renewing.

    A database blip (a restart, a terminated connection) is retried per step, so it neither
    loses the cancellation nor repeats the message."""
    told_in = lang or await _with_db_retries(
        lambda: language_of(config, event.telegram_user_id))
    await tell(bot, event.telegram_user_id,
               get_text("refunded_notice", told_in, config, charge_id=event.charge_id))
    await call_host(config.on_refunded, event)
    async def cancel() -> None:
        await cancel_refunded_subscription(bot, config, event,
                                           lang=told_in or config.default_language)

    await _with_db_retries(cancel)


async def cancel_refunded_subscription(bot: Bot, config: BillingConfig, event: RefundEvent, *,
                                       lang: str) -> None:
    """Cancel (``editUserStarSubscription(is_canceled=True)``) the subscription a refunded
    charge belongs to; a rejected first payment of a second subscription is cancelled by its
    own charge id (it is that subscription's first charge)."""
    # app registry: bot_kit.models (and the subscriptions module) need it; imported on use
    from bot_kit.models import StarSubscription, TelegramPayment

    payment = await TelegramPayment.objects.filter(charge_id=event.charge_id).afirst()
    if payment is None:
        return
    if payment.subscription_id is None:
        if payment.is_first_recurring:
            await _cancel_charge(bot, payment.telegram_user_id, payment.charge_id)
        return
    subscription = await StarSubscription.objects.aget(pk=payment.subscription_id)
    if subscription.state == StarSubscription.State.CANCELED:
        return
    # app registry: the subscriptions module loads bot_kit.models
    from bot_kit.payments.errors import SubscriptionNotFound
    from bot_kit.payments.subscriptions import set_subscription_canceled

    try:
        _, changed = await set_subscription_canceled(
            bot, subscription.telegram_user_id, canceled=True, subscription_id=subscription.pk,
            reason="refunded")
    except (TelegramAPIError, SubscriptionNotFound) as exc:
        logger.warning("could not cancel subscription %s after a refund: %s", subscription.pk,
                       exc)
        return
    if changed is not None:
        await subscription_changed(bot, config, changed, lang=lang)


async def _cancel_charge(bot: Bot, telegram_user_id: int, charge_id: str) -> None:
    try:
        await bot.edit_user_star_subscription(user_id=telegram_user_id,
                                              telegram_payment_charge_id=charge_id,
                                              is_canceled=True)
    except TelegramAPIError as exc:
        logger.warning("could not cancel the subscription of charge %s: %s", charge_id, exc)


__all__ = [
    "after_refund",
    "cancel_refunded_subscription",
    "format_date",
    "language_of",
    "offer_name",
    "subscription_changed",
    "tell",
]
