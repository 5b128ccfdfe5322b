"""The purchase router: ``/buy``, buy buttons, pre-checkout, payments, refunds.

Handlers are thin: they read the update, call the payment services through ``sync_to_async``
and answer. Identity comes from bot_kit's middleware (``billing_user_id``, ``billing_lang``);
without it the Telegram identity is looked up directly.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message, PreCheckoutQuery, User
from asgiref.sync import sync_to_async

from billable.exceptions import BillableError, UserNotFound
from bot_kit import billing
from bot_kit.callbacks import BuyOffer, BuyOfferRef, answer_callback, offer_sku
from bot_kit.config import BillingConfig
from bot_kit.events import call_host
from bot_kit.notices import after_refund
from bot_kit.payments.confirm import (
    ConfirmResult,
    PaymentFacts,
    aconfirm_payment,
    aorder_summary,
)
from bot_kit.payments.invoices import (
    aprepare_invoice,
    apurchasable_offers,
    from_minor_units,
    send_invoice,
)
from bot_kit.payments.precheckout import answer_pre_checkout
from bot_kit.payments.refunds import RefundOutbox, arecord_refunded_once, arequest_refund
from bot_kit.paywall import format_price, offers_keyboard
from bot_kit.routing import needs_message_field
from bot_kit.texts import SOURCE, error_text, get_text, user_language

logger = logging.getLogger("bot_kit.payments")


async def resolve_user_id(billing_user_id: int | None, tg_user: User,
                          config: BillingConfig) -> int:
    """The billing user id injected by the middleware, else looked up by Telegram id."""
    if billing_user_id is not None:
        return billing_user_id
    found = await billing.auser_id_for(tg_user.id, config.telegram_provider)
    if found is None:
        raise UserNotFound("Telegram user is not known to billing yet")
    return found


async def language(lang: str | None, tg_user: User | None, config: BillingConfig) -> str:
    """The user's language (``bot_kit.texts.user_language``: host hook, aiogram ``I18n``,
    the injected one, Telegram's ``language_code``, the default)."""
    return await user_language(config, tg_user, lang)


async def try_refund_now(bot: Bot, refund_id: int | None,
                         config: BillingConfig | None = None) -> str | None:
    """One immediate outbox attempt for ``refund_id`` (the worker retries if it fails)."""
    if refund_id is None:
        return None
    try:
        states = await RefundOutbox(bot, config=config).process_due(only=refund_id)
    except Exception:
        logger.exception("immediate refund attempt %s failed", refund_id)
        return None
    return states.get(refund_id)


async def send_offer_invoice(bot: Bot, chat_id: int, tg_user: User, sku: str, *,
                             user_id: int, config: BillingConfig,
                             lang: str | None = None) -> None:
    """Create the order for ``sku`` and send its invoice (in ``lang``) to ``chat_id``."""
    request = await aprepare_invoice(user_id, tg_user.id, sku, config, lang=lang)
    await send_invoice(bot, chat_id, request)


@needs_message_field("successful_payment")
async def is_successful_payment(message: Message) -> bool:
    """Filter: a ``successful_payment`` service message (async: evaluated in the event loop)."""
    return message.successful_payment is not None


@needs_message_field("refunded_payment")
async def is_refunded_payment(message: Message) -> bool:
    """Filter: a ``refunded_payment`` service message (async: evaluated in the event loop)."""
    return message.refunded_payment is not None


@dataclass(frozen=True)
class ConfirmedPayment:
    """A charge confirmed for the first time, for its handler to answer."""

    result: ConfirmResult
    facts: PaymentFacts
    lang: str


async def confirm_once(message: Message, bot: Bot, config: BillingConfig, *,
                       billing_user_id: int | None,
                       billing_lang: str | None) -> ConfirmedPayment | None:
    """The part both ``successful_payment`` handlers share (purchases and gifts).

    Confirms the message's charge exactly once (``aconfirm_payment``). Returns ``None`` when
    there is nothing more to answer: not a payment, a charge seen before (a redelivery, another
    process), or a rejected charge — whose payer has then been told why and whose refund was
    attempted at once (the outbox retries it).
    """
    tg_user, paid = message.from_user, message.successful_payment
    if tg_user is None or paid is None:
        return None
    facts = PaymentFacts.from_message(tg_user.id, paid)
    result = await aconfirm_payment(facts, config.signing_secrets, user_id=billing_user_id,
                                    provider=config.telegram_provider, bot_id=bot.id)
    if not result.created:
        return None
    lang = await language(billing_lang, tg_user, config)
    if not result.confirmed:
        await message.answer(get_text("payment_rejected", lang, config,
                                      reason=rejection_text(result.payment.reason, lang, config),
                                      charge_id=facts.charge_id), parse_mode=None)
        await try_refund_now(bot, result.refund_id, config)
        return None
    return ConfirmedPayment(result, facts, lang)


def _add_catalog(router: Router, config: BillingConfig) -> None:
    command = config.command("buy")
    if command is not None:
        router.message.register(_buy_command(config), Command(command))

    async def buy_button(query: CallbackQuery, callback_data: BuyOffer | BuyOfferRef, bot: Bot,
                         billing_user_id: int | None = None,
                         billing_lang: str | None = None) -> None:
        """A buy button (catalog, paywall or alert; the SKU form or the short reference of a
        long SKU): create the order and send its invoice."""
        await answer_callback(query, bot)
        user_id = await resolve_user_id(billing_user_id, query.from_user, config)
        chat_id = query.message.chat.id if query.message is not None else query.from_user.id
        sku = offer_sku(callback_data, (*config.offers, *config.paywall_fallback))
        await send_offer_invoice(bot, chat_id, query.from_user, sku,
                                 user_id=user_id, config=config,
                                 lang=await language(billing_lang, query.from_user, config))

    router.callback_query.register(buy_button, BuyOffer.filter())
    router.callback_query.register(buy_button, BuyOfferRef.filter())


def _buy_command(config: BillingConfig) -> Callable[..., Awaitable[None]]:
    async def buy(message: Message, command: CommandObject, bot: Bot,
                  billing_user_id: int | None = None, billing_lang: str | None = None) -> None:
        """``/buy``: the catalog keyboard; ``/buy SKU``: that offer's invoice (configured
        offers only: anything else is answered "cannot be bought here")."""
        tg_user = message.from_user
        if tg_user is None:
            return
        lang = await language(billing_lang, tg_user, config)
        if command.args and command.args.strip():
            user_id = await resolve_user_id(billing_user_id, tg_user, config)
            await send_offer_invoice(bot, message.chat.id, tg_user, command.args.strip(),
                                     user_id=user_id, config=config, lang=lang)
            return
        offers = await apurchasable_offers(config)
        if not offers:
            await message.answer(get_text("buy_empty", lang, config), parse_mode=None)
            return
        await message.answer(get_text("buy_catalog", lang, config),
                             reply_markup=offers_keyboard(offers, lang, config), parse_mode=None)

    return buy


def _add_checkout(router: Router, config: BillingConfig) -> None:
    @router.pre_checkout_query()
    async def pre_checkout(query: PreCheckoutQuery, billing_user_id: int | None = None,
                           billing_lang: str | None = None) -> None:
        """Approve or decline within Telegram's deadline."""
        await answer_pre_checkout(query, config, user_id=billing_user_id, lang=billing_lang)

    @router.message(is_successful_payment)
    async def successful_payment(message: Message, bot: Bot,
                                 billing_user_id: int | None = None,
                                 billing_lang: str | None = None) -> None:
        """Confirm once per charge; one receipt, or a refund notice for a rejected charge."""
        confirmed = await confirm_once(message, bot, config, billing_user_id=billing_user_id,
                                       billing_lang=billing_lang)
        if confirmed is None:
            return
        result, facts, lang = confirmed.result, confirmed.facts, confirmed.lang
        amount = format_price(from_minor_units(facts.total_amount, facts.currency),
                              facts.currency)
        await message.answer(get_text("payment_receipt", lang, config,
                                      order_id=result.order_id,
                                      name=await aorder_summary(result.order_id, lang),
                                      amount=amount, charge_id=facts.charge_id), parse_mode=None)
        await call_host(config.on_paid, result.event)
        if result.subscription_event is not None:
            await call_host(config.on_subscription_changed, result.subscription_event)

    @router.message(is_refunded_payment)
    async def refunded_payment(message: Message, bot: Bot,
                               billing_lang: str | None = None) -> None:
        """Telegram refunded a charge: reverse its grant once; tell the user and the host
        once; a refunded subscription charge cancels the subscription at Telegram."""
        if message.refunded_payment is None:
            return
        _, event = await arecord_refunded_once(message.refunded_payment.telegram_payment_charge_id)
        if event is not None:
            await after_refund(bot, config, event,
                               lang=await language(billing_lang, message.from_user, config))


def rejection_text(reason: str, lang: str, config: BillingConfig) -> str:
    """Why a payment was rejected, as a localized sentence (never a raw code)."""
    key = f"precheckout_{reason}"
    return get_text(key if key in SOURCE else "precheckout_invalid", lang, config)


def _add_refund_command(router: Router, config: BillingConfig) -> None:
    name = config.command("refund")
    if name is None:
        return

    @router.message(Command(name))
    async def refund(message: Message, command: CommandObject, bot: Bot,
                     billing_lang: str | None = None) -> None:
        """``/refund <charge id | order id>`` (admins): queue and attempt the refund."""
        tg_user = message.from_user
        lang = await language(billing_lang, tg_user, config)
        if tg_user is None or not config.is_admin(tg_user.id):
            await message.answer(get_text("refund_forbidden", lang, config), parse_mode=None)
            return
        reference = (command.args or "").strip()
        if not reference:
            await message.answer(get_text("refund_usage", lang, config), parse_mode=None)
            return
        try:
            request = await arequest_refund(reference, reason="admin refund",
                                            requested_by=f"telegram:{tg_user.id}")
        except BillableError as exc:
            await message.answer(error_text(exc.code, lang, config), parse_mode=None)
            return
        state = await try_refund_now(bot, request.pk, config) or request.state
        charge_id, taken_by = await sync_to_async(
            lambda: (request.payment.charge_id, request.payment.bot_id))()
        await message.answer(get_text("refund_queued", lang, config, charge_id=charge_id,
                                      state=refund_state_text(state, taken_by, bot.id, lang,
                                                              config)),
                             parse_mode=None)


def refund_state_text(state: str, taken_by: int | None, bot_id: int, lang: str,
                      config: BillingConfig) -> str:
    """The state of a refund asked for at ``bot_id``, as the admin reads it.

    A pending refund of a payment another bot received (``taken_by``) is not retried here:
    only that bot can call ``refundStarPayment`` for it, and its refund worker will
    (``refund_state_other_bot``, naming it).
    """
    if state == "pending" and taken_by is not None and taken_by != bot_id:
        return get_text("refund_state_other_bot", lang, config, bot_id=taken_by)
    return get_text(f"refund_state_{state}", lang, config)


def create_purchase_router(config: BillingConfig) -> Router:
    """The router of one-time purchases and refunds (see the module docstring)."""
    router = Router(name="bot_kit.payments")
    _add_checkout(router, config)
    _add_catalog(router, config)
    _add_refund_command(router, config)
    return router


__all__ = [
    "ConfirmedPayment",
    "confirm_once",
    "create_purchase_router",
    "is_refunded_payment",
    "is_successful_payment",
    "resolve_user_id",
    "send_offer_invoice",
    "try_refund_now",
]
