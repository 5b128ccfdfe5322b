"""Pre-checkout: approve only a payable order of this buyer at this price, within the deadline.

Telegram cancels a checkout that is not answered within 10 seconds. The whole decision (database
reads and the host's validator) runs under ``DECISION_BUDGET`` seconds; the host validator gets
``config.precheckout_timeout`` at most. Anything slow, failing or unexpected declines: the
answer is always sent, and it is ``ok=True`` only when every check passed (fail closed).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiogram.exceptions import TelegramBadRequest
from asgiref.sync import sync_to_async

from billable import metrics
from bot_kit import billing
from bot_kit.payments.errors import InvalidPayload
from bot_kit.payments.invoices import to_minor_units
from bot_kit.payments.payload import KIND_DISCOUNT, InvoicePayload, verify_payload
from bot_kit.payments.subscriptions import active_subscription, subscription_sku
from bot_kit.texts import get_text, user_language

if TYPE_CHECKING:
    from aiogram.types import PreCheckoutQuery

    from bot_kit.config import BillingConfig

logger = logging.getLogger("bot_kit.payments")

#: Seconds the decision may take before we decline (Telegram's hard limit is 10).
DECISION_BUDGET = 7.0

# Stable reason codes; the localized texts are ``precheckout_<code>`` in locales/payments.py.
INVALID = "invalid"
WRONG_BUYER = "wrong_buyer"
NOT_FOUND = "not_found"
NOT_PAYABLE = "not_payable"
ALREADY_PAID = "already_paid"
AMOUNT_MISMATCH = "amount_mismatch"
UNAVAILABLE = "unavailable"
ALREADY_SUBSCRIBED = "already_subscribed"
WRONG_BOT = "wrong_bot"


@dataclass(frozen=True)
class Charge:
    """What the buyer is about to pay (or paid): payer, payload and price in minor units."""

    telegram_user_id: int
    payload: str
    currency: str
    total_amount: int


@dataclass(frozen=True)
class OrderCheck:
    """Outcome of checking a charge against its order: ``reason`` is None when it matches."""

    reason: str | None
    payload: InvoicePayload | None = None
    order: billing.OrderView | None = None


def billing_user_id_for(telegram_user_id: int, provider: str = "telegram") -> int | None:
    """The billing user linked to a Telegram user id, if any."""
    return billing.user_id_for(telegram_user_id, provider)


def check_charge(charge: Charge, secrets: tuple[str, ...], *, user_id: int | None,
                 allow_paid: bool = False, bot_id: int | None = None) -> OrderCheck:
    """Match ``charge`` with its signed payload and order (read-only).

    ``user_id`` is the payer's billing user. ``allow_paid`` lets an order that is already paid
    pass (renewals of a subscription reuse the first order's payload). ``bot_id`` is the bot
    the charge arrived at: a payload or order bound to another bot is ``wrong_bot``.
    """
    try:
        payload = verify_payload(charge.payload, secrets)
    except InvalidPayload:
        return OrderCheck(INVALID)
    if bot_id is not None and payload.bot_id is not None and payload.bot_id != bot_id:
        return OrderCheck(WRONG_BOT, payload)
    if payload.buyer_id != charge.telegram_user_id:
        return OrderCheck(WRONG_BUYER, payload)
    if (payload.currency != charge.currency.upper() or payload.amount != charge.total_amount):
        return OrderCheck(AMOUNT_MISMATCH, payload)
    order = billing.order(payload.order_id)
    if order is None:
        return OrderCheck(NOT_FOUND, payload)
    if not same_bot(order, bot_id):
        return OrderCheck(WRONG_BOT, payload, order)
    if user_id is None or order.user_id != user_id:
        return OrderCheck(WRONG_BUYER, payload, order)
    if order.currency.upper() != payload.currency or _minor(order) != payload.amount:
        return OrderCheck(AMOUNT_MISMATCH, payload, order)
    if order.is_paid and not allow_paid:
        return OrderCheck(ALREADY_PAID, payload, order)
    if not (order.is_pending or order.is_paid):
        return OrderCheck(NOT_PAYABLE, payload, order)
    return OrderCheck(None, payload, order)


def same_bot(order: billing.OrderView, bot_id: int | None) -> bool:
    """False when ``order`` was sold by a bot other than ``bot_id`` (its
    ``metadata["bot_id"]``); an order or a check without a bot matches any."""
    owner = order.metadata.get("bot_id")
    return bot_id is None or owner is None or str(owner) == str(bot_id)


def receiving_bot_id(event: Any) -> int | None:
    """The id of the bot an aiogram update object (query, message) arrived at, if bound."""
    bot = getattr(event, "bot", None)
    bot_id = getattr(bot, "id", None) if bot is not None else None
    return bot_id if isinstance(bot_id, int) else None


def _minor(order: billing.OrderView) -> int:
    try:
        return to_minor_units(order.total_amount, order.currency)
    except ValueError:
        return -1


def check_precheckout(charge: Charge, config: BillingConfig, *,
                      user_id: int | None = None, bot_id: int | None = None) -> OrderCheck:
    """``check_charge`` for a pre-checkout query, resolving the payer when not given.

    ``bot_id`` is the bot the query arrived at (default ``config.bot_id``)."""
    if user_id is None:
        user_id = billing_user_id_for(charge.telegram_user_id, config.telegram_provider)
    result = check_charge(charge, config.signing_secrets, user_id=user_id,
                          bot_id=bot_id if bot_id is not None else config.bot_id)
    if result.reason is None and result.payload is not None and (
            result.payload.kind == KIND_DISCOUNT):
        reason = discount_problem(result.payload)
        if reason is not None:
            return OrderCheck(reason, result.payload, result.order)
    if result.payload is not None and result.payload.is_subscription:
        return _check_subscription(charge, result)
    return result


def discount_problem(payload: InvoicePayload) -> str | None:
    """Pre-checkout re-check of a discounted invoice: ``None`` while its promo reservation
    holds and its discount matches the order, else a ``promo_*`` reason code."""
    reason = billing.promo_reservation_problem(payload.promo_id, order_id=payload.order_id)
    if reason is not None:
        return reason
    red = billing.promo_redemption(payload.promo_id)
    if red is None:
        return "promo_unknown"
    currency = red.currency or payload.currency
    expected = to_minor_units(red.list_price, currency) - to_minor_units(red.price, currency)
    return None if expected == payload.discount else "promo_unknown"


def _check_subscription(charge: Charge, result: OrderCheck) -> OrderCheck:
    """One active subscription per user and offer.

    Telegram debits renewals by itself (the user is not there to press "Pay"), so a
    pre-checkout query for a subscription is always a user starting one: the link of a
    subscription already paid for (``already_paid``), or a new link while one to the same
    offer still runs, is a second subscription and is declined.
    """
    if result.reason == ALREADY_PAID:
        return OrderCheck(ALREADY_SUBSCRIBED, result.payload, result.order)
    if result.reason is None and active_subscription(
            charge.telegram_user_id, subscription_sku(result.order)) is not None:
        return OrderCheck(ALREADY_SUBSCRIBED, result.payload, result.order)
    return result


async def _decide(query: PreCheckoutQuery, config: BillingConfig,
                  user_id: int | None) -> tuple[str | None, str | None]:
    charge = Charge(telegram_user_id=query.from_user.id, payload=query.invoice_payload,
                    currency=query.currency, total_amount=query.total_amount)
    bot_id = receiving_bot_id(query)
    if bot_id is not None and config.bot_id is not None and bot_id != config.bot_id:
        logger.error("BillingConfig.bot_id is %s but this bot's id is %s: its invoices are "
                     "refused as another bot's (wrong_bot)", config.bot_id, bot_id)
    result = await sync_to_async(check_precheckout)(charge, config, user_id=user_id,
                                                    bot_id=bot_id)
    if result.reason is not None or config.precheckout_validator is None:
        return result.reason, None
    record = result.order.record if result.order is not None else None
    text = await asyncio.wait_for(config.precheckout_validator(query, record),
                                  timeout=min(config.precheckout_timeout, DECISION_BUDGET))
    # a blank text still declines, with the kit's sentence: Telegram requires an error_message
    return (UNAVAILABLE, str(text).strip() or None) if text else (None, None)


async def answer_pre_checkout(query: PreCheckoutQuery, config: BillingConfig, *,
                              user_id: int | None = None, lang: str | None = None,
                              budget: float = DECISION_BUDGET) -> bool:
    """Decide and answer ``query``; returns whether it was approved."""
    reason: str | None
    custom: str | None = None
    try:
        async with asyncio.timeout(budget):
            reason, custom = await _decide(query, config, user_id)
    except TimeoutError:
        logger.warning("pre-checkout %s declined: decision timed out", query.id)
        reason = UNAVAILABLE
    except Exception:
        logger.exception("pre-checkout %s declined: validation failed", query.id)
        reason = UNAVAILABLE
    if reason is None:
        await _answer(query, ok=True)
        return True
    metrics.record_payment("declined", currency=query.currency, method="telegram", reason=reason)
    language = await user_language(config, query.from_user, lang)
    message = custom or get_text(f"precheckout_{reason}", language, config)
    await _answer(query, ok=False, error_message=message)
    return False


async def _answer(query: PreCheckoutQuery, **answer: Any) -> None:
    """Answer ``query``; Telegram refusing it (a redelivered query answered already, or one
    past its 10 seconds) is logged, not raised: nothing a retry of the update could fix."""
    try:
        await query.answer(**answer)
    except TelegramBadRequest as refused:
        logger.warning("pre-checkout %s: Telegram refused the answer: %s", query.id,
                       refused.message)


__all__ = [
    "Charge",
    "OrderCheck",
    "answer_pre_checkout",
    "billing_user_id_for",
    "check_charge",
    "check_precheckout",
    "receiving_bot_id",
    "same_bot",
]
