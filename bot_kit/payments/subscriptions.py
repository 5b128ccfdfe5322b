"""Telegram Stars subscriptions: invoice links, renewals, state updates, cancel / re-enable.

A subscription offer is an ``XTR`` offer listed in ``config.subscription_offers`` whose items are
``period`` products. The first payment confirms the order named by the invoice payload; every
renewal (a new charge id with the same payload) gets its own order, paid through
``billing.pay_order`` (``OrderService.pay_order``) so the ledger extends the period once per
charge.

Rules of the Bot API applied here (``createInvoiceLink``): the price of a subscription is at most
10,000 Stars (checked when the offer is saved and again before a link is made), and the period
is 2,592,000 s (30 days) — ``BillingConfig.subscription_period`` may differ only with
``test_environment=True``. One active subscription per user and offer: a second one is declined
at pre-checkout (see ``precheckout.py``). ``editUserStarSubscription`` is called with the charge
id of the subscription's **first** payment (docs/payments.md, "Which charge id").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from billable import signals as billable_signals
from bot_kit import billing
from bot_kit.config import _SUBSCRIPTION_SKUS
from bot_kit.events import SubscriptionEvent, send_on_commit, subscription_changed
from bot_kit.models import StarSubscription
from bot_kit.payments.errors import AlreadySubscribed, NotPurchasable, SubscriptionNotFound
from bot_kit.payments.invoices import STARS, InvoiceRequest, create_invoice_link, prepare_invoice
from bot_kit.payments.payload import KIND_SUBSCRIPTION, issuing_bot

if TYPE_CHECKING:
    from aiogram import Bot

    from bot_kit.config import BillingConfig

#: The billable signal (and outbound event) of a subscription entering a state.
STATE_SIGNALS: dict[str, Signal] = {
    StarSubscription.State.FAILED: billable_signals.subscription_failed,
    StarSubscription.State.CANCELED: billable_signals.subscription_cancelled,
}

#: The only period Telegram accepts for Stars subscriptions: 30 days, in seconds.
SUBSCRIPTION_PERIOD = 2592000
#: The highest subscription price the Bot API accepts (``createInvoiceLink``), in Stars.
MAX_SUBSCRIPTION_STARS = 10000


def subscription_skus() -> set[str]:
    """SKUs sold as Stars subscriptions in this process: every ``BillingConfig``'s
    ``subscription_offers`` plus the ``BOT_KIT_SUBSCRIPTION_OFFERS`` setting (for a web process
    that never builds the bot's config, e.g. the admin)."""
    configured = getattr(settings, "BOT_KIT_SUBSCRIPTION_OFFERS", ()) or ()
    return {str(s).upper() for s in configured} | set(_SUBSCRIPTION_SKUS)


def subscription_price_problem(offer: Any) -> str | None:
    """Why ``offer`` cannot be a Stars subscription price, or ``None``."""
    if offer.currency.upper() != STARS:
        return "A Telegram Stars subscription must be priced in XTR."
    if offer.price is None or offer.price > MAX_SUBSCRIPTION_STARS:
        return (f"A Telegram Stars subscription costs at most {MAX_SUBSCRIPTION_STARS} Stars "
                "(Bot API, createInvoiceLink).")
    return None


def validate_subscription_offer(offer: Any) -> None:
    """``Offer.clean`` hook: a subscription offer must respect the Bot API's price cap."""
    if (str(offer.currency or "").upper() != STARS or offer.price is None
            or offer.price <= MAX_SUBSCRIPTION_STARS):
        return
    if normalize_sku(offer.sku) in subscription_skus():
        raise ValidationError({"price": subscription_price_problem(offer)})


def normalize_sku(sku: Any) -> str:
    return str(sku or "").strip().upper()


def active_subscription(telegram_user_id: int, sku: str, *,
                        exclude_payload: str | None = None) -> StarSubscription | None:
    """The user's subscription to ``sku`` whose paid period has not ended, if any."""
    rows = StarSubscription.objects.filter(telegram_user_id=telegram_user_id,
                                           sku=normalize_sku(sku))
    if exclude_payload is not None:
        rows = rows.exclude(invoice_payload=exclude_payload)
    now = timezone.now()
    for row in rows:
        if row.expires_at is None or row.expires_at > now:
            return row
    return None


def prepare_subscription(user_id: int, telegram_user_id: int, sku: str,
                         config: BillingConfig, lang: str | None = None) -> InvoiceRequest:
    """A pending first order for subscription offer ``sku`` and its signed invoice data."""
    offer = billing.offer(normalize_sku(sku), active_only=False)
    if (offer is None or offer.sku not in config.subscription_offers
            or offer.currency.upper() != STARS):
        raise NotPurchasable(f"Offer {sku!r} is not a Stars subscription offer")
    problem = subscription_price_problem(offer)
    if problem:
        raise NotPurchasable(problem)
    if active_subscription(telegram_user_id, offer.sku) is not None:
        raise AlreadySubscribed(f"User already subscribed to {offer.sku}")
    return prepare_invoice(user_id, telegram_user_id, offer.sku, config, kind=KIND_SUBSCRIPTION,
                           lang=lang)


async def aprepare_subscription(user_id: int, telegram_user_id: int, sku: str,
                                config: BillingConfig, lang: str | None = None
                                ) -> InvoiceRequest:
    """Async twin of ``prepare_subscription``."""
    return await sync_to_async(prepare_subscription)(user_id, telegram_user_id, sku, config,
                                                     lang)


async def create_subscription_link(bot: Bot, request: InvoiceRequest,
                                   period: int = SUBSCRIPTION_PERIOD) -> str:
    """``createInvoiceLink`` with the subscription period (``config.subscription_period``)."""
    return await create_invoice_link(bot, request, subscription_period=period)


def from_unix(value: int | None) -> datetime | None:
    """A Telegram Unix timestamp as an aware datetime (None stays None)."""
    return datetime.fromtimestamp(value, tz=UTC) if value else None


def record_subscription_charge(*, user_id: int, telegram_user_id: int, sku: str, payload: str,
                               charge_id: str, expiration: int | None,
                               renewal: bool) -> StarSubscription:
    """Create or advance the subscription row for one charge (call inside the payment txn);
    see :func:`charge_subscription`, which also returns the change's event."""
    return charge_subscription(user_id=user_id, telegram_user_id=telegram_user_id, sku=sku,
                               payload=payload, charge_id=charge_id, expiration=expiration,
                               renewal=renewal)[0]


def charge_subscription(*, user_id: int, telegram_user_id: int, sku: str, payload: str,
                        charge_id: str, expiration: int | None,
                        renewal: bool) -> tuple[StarSubscription, SubscriptionEvent]:
    """Create or advance the subscription row for one charge (call inside the payment txn):
    ``(subscription, event)``, the event's ``previous_state`` being the state before the charge.

    A charge always extends the period it paid for (``expires_at``). A renewal leaves a
    cancelled subscription cancelled: ``editUserStarSubscription(is_canceled=True)`` (and the
    user's cancel) stop Telegram from *extending* it, so a renewal still arriving was taken
    before the cancel (or delivered late) and does not re-enable it; only Telegram's
    ``subscription`` update ``active`` or the bot's re-enable do (docs/payments.md, "A renewal
    after a cancel"). A renewal after ``failed`` (a payment that did not go through) is the
    subscription running again: ``active``.
    """
    subscription, created = StarSubscription.objects.select_for_update().get_or_create(
        telegram_user_id=telegram_user_id, invoice_payload=payload,
        defaults={"user_id": user_id, "sku": sku, "first_charge_id": charge_id,
                  "last_charge_id": charge_id, "expires_at": from_unix(expiration)},
    )
    previous = "" if created else subscription.state
    if not created:
        subscription.last_charge_id = charge_id
        if not (renewal and subscription.state == StarSubscription.State.CANCELED):
            subscription.state = StarSubscription.State.ACTIVE
        subscription.expires_at = from_unix(expiration) or subscription.expires_at
        subscription.renewals += 1 if renewal else 0
        subscription.save()
    return subscription, _changed(subscription, previous, "renewed" if renewal else "subscribed")


def _changed(subscription: StarSubscription, previous: str, reason: str) -> SubscriptionEvent:
    """Queue the ``subscription_changed`` signal for after the commit; return the event."""
    event = SubscriptionEvent(
        telegram_user_id=subscription.telegram_user_id, user_id=subscription.user_id,
        sku=subscription.sku, state=str(subscription.state), previous_state=str(previous),
        reason=reason, expires_at=subscription.expires_at)
    send_on_commit(subscription_changed, StarSubscription, event)
    # billable's signal of the same change writes the outbound event in this transaction.
    signal = (billable_signals.subscription_renewed if reason == "renewed"
              else STATE_SIGNALS.get(str(subscription.state)) if previous != subscription.state
              else None)
    if signal is not None:
        billable_signals.send_on_commit(signal, sender=StarSubscription,
                                        subscription=subscription)
    return event


def record_subscription_update(telegram_user_id: int, payload: str,
                               state: str) -> StarSubscription | None:
    """Apply a ``subscription`` update (canceled / active / failed); idempotent."""
    return apply_subscription_update(telegram_user_id, payload, state)[0]


_REASONS = {"canceled": "canceled", "active": "resumed", "failed": "failed"}


def apply_subscription_update(telegram_user_id: int, payload: str, state: str, *,
                              reason: str | None = None
                              ) -> tuple[StarSubscription | None, SubscriptionEvent | None]:
    """Apply a state change once: ``(subscription, event)``; ``event`` is ``None`` when the
    state was already ``state`` (a redelivered update) or the subscription is unknown."""
    if state not in StarSubscription.State.values:
        return None, None
    event = None
    with transaction.atomic():
        subscription = (StarSubscription.objects.select_for_update()
                        .filter(telegram_user_id=telegram_user_id, invoice_payload=payload)
                        .first())
        if subscription is not None and subscription.state != state:
            previous = subscription.state
            subscription.state = state
            subscription.save(update_fields=["state", "updated_at"])
            event = _changed(subscription, previous, reason or _REASONS.get(state, state))
    return subscription, event


async def aapply_subscription_update(telegram_user_id: int, payload: str, state: str, *,
                                     reason: str | None = None
                                     ) -> tuple[StarSubscription | None,
                                                SubscriptionEvent | None]:
    """Async twin of ``apply_subscription_update``."""
    return await sync_to_async(apply_subscription_update)(telegram_user_id, payload, state,
                                                          reason=reason)


async def arecord_subscription_update(telegram_user_id: int, payload: str,
                                      state: str) -> StarSubscription | None:
    """Async twin of ``record_subscription_update``."""
    return await sync_to_async(record_subscription_update)(telegram_user_id, payload, state)


def latest_subscription(telegram_user_id: int) -> StarSubscription | None:
    """The user's most recent Stars subscription, if any."""
    return StarSubscription.objects.filter(telegram_user_id=telegram_user_id).first()


async def alatest_subscription(telegram_user_id: int) -> StarSubscription | None:
    """Async twin of ``latest_subscription``."""
    return await sync_to_async(latest_subscription)(telegram_user_id)


def _bot_id(bot: Bot) -> int | None:
    bot_id = getattr(bot, "id", None)
    return bot_id if isinstance(bot_id, int) else None


def belongs_to(subscription: StarSubscription, bot_id: int | None) -> bool:
    """Whether the bot ``bot_id`` manages ``subscription``: the bot its payload names (a
    subscription bought before ``bot_id`` was set, or with ``bot_id=None``, belongs to any).
    Only that bot can cancel it (``editUserStarSubscription`` is per bot) and hears about it."""
    issuer = issuing_bot(subscription.invoice_payload)
    return bot_id is None or issuer is None or issuer == bot_id


async def set_subscription_canceled(bot: Bot, telegram_user_id: int, *, canceled: bool,
                                    subscription_id: int | None = None,
                                    reason: str | None = None
                                    ) -> tuple[StarSubscription, SubscriptionEvent | None]:
    """Cancel (or re-enable) a subscription of the user through ``editUserStarSubscription``.

    ``subscription_id`` picks one (default: the latest). Telegram identifies the subscription
    by the charge id of its **first** payment, whatever the number of renewals since. The
    state is recorded only after Telegram accepted the change; returns the subscription and
    the change event (``None`` when it was already in that state).
    """
    if subscription_id:
        subscription = await StarSubscription.objects.filter(
            pk=subscription_id, telegram_user_id=telegram_user_id).afirst()
    else:
        subscription = await alatest_subscription(telegram_user_id)
    if subscription is None or not belongs_to(subscription, _bot_id(bot)):
        raise SubscriptionNotFound()
    await bot.edit_user_star_subscription(
        user_id=telegram_user_id, telegram_payment_charge_id=subscription.first_charge_id,
        is_canceled=canceled,
    )
    state = StarSubscription.State.CANCELED if canceled else StarSubscription.State.ACTIVE
    updated, event = await aapply_subscription_update(
        telegram_user_id, subscription.invoice_payload, state, reason=reason)
    return updated or subscription, event


def subscription_sku(order: Any) -> str:
    """The SKU a subscription order (an ``OrderView`` or anything with a ``pk``) was for: its
    first item's."""
    skus = billing.order_skus(order.pk)
    if not skus:
        raise SubscriptionNotFound("Subscription order has no items")
    return skus[0]


__all__ = [
    "MAX_SUBSCRIPTION_STARS",
    "SUBSCRIPTION_PERIOD",
    "aapply_subscription_update",
    "active_subscription",
    "alatest_subscription",
    "apply_subscription_update",
    "aprepare_subscription",
    "arecord_subscription_update",
    "belongs_to",
    "charge_subscription",
    "create_subscription_link",
    "from_unix",
    "latest_subscription",
    "prepare_subscription",
    "record_subscription_charge",
    "record_subscription_update",
    "set_subscription_canceled",
    "subscription_price_problem",
    "subscription_sku",
    "subscription_skus",
    "validate_subscription_offer",
]
