"""Telegram Stars subscriptions: invoice links, renewals, state updates, cancel / re-enable.

A subscription offer is an ``XTR`` offer listed in ``config.subscription_offers`` whose items are
``period`` products. The first payment confirms the order named by the invoice payload; every
renewal (a new charge id with the same payload) gets its own order, paid through
``billing.pay_order`` (``OrderService.pay_order``) so the ledger extends the period once per
charge.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.db import transaction

from bot_kit import billing
from bot_kit.models import StarSubscription
from bot_kit.payments.errors import NotPurchasable, SubscriptionNotFound
from bot_kit.payments.invoices import STARS, InvoiceRequest, create_invoice_link, prepare_invoice
from bot_kit.payments.payload import KIND_SUBSCRIPTION

if TYPE_CHECKING:
    from aiogram import Bot

    from bot_kit.config import BillingConfig

#: The only period Telegram accepts for Stars subscriptions: 30 days, in seconds.
SUBSCRIPTION_PERIOD = 2592000


def prepare_subscription(user_id: int, telegram_user_id: int, sku: str,
                         config: BillingConfig) -> InvoiceRequest:
    """A pending first order for subscription offer ``sku`` and its signed invoice data."""
    offer = billing.offer(sku, active_only=False)
    if (offer is None or offer.sku not in config.subscription_offers
            or offer.currency.upper() != STARS):
        raise NotPurchasable(f"Offer {sku!r} is not a Stars subscription offer")
    return prepare_invoice(user_id, telegram_user_id, offer.sku, config, kind=KIND_SUBSCRIPTION)


async def aprepare_subscription(user_id: int, telegram_user_id: int, sku: str,
                                config: BillingConfig) -> InvoiceRequest:
    """Async twin of ``prepare_subscription``."""
    return await sync_to_async(prepare_subscription)(user_id, telegram_user_id, sku, config)


async def create_subscription_link(bot: Bot, request: InvoiceRequest) -> str:
    """``createInvoiceLink`` with the 30-day Stars subscription period."""
    return await create_invoice_link(bot, request, subscription_period=SUBSCRIPTION_PERIOD)


def from_unix(value: int | None) -> datetime | None:
    """A Telegram Unix timestamp as an aware datetime (None stays None)."""
    return datetime.fromtimestamp(value, tz=UTC) if value else None


def record_subscription_charge(*, user_id: int, telegram_user_id: int, sku: str, payload: str,
                               charge_id: str, expiration: int | None,
                               renewal: bool) -> StarSubscription:
    """Create or advance the subscription row for one charge (call inside the payment txn)."""
    subscription, created = StarSubscription.objects.select_for_update().get_or_create(
        telegram_user_id=telegram_user_id, invoice_payload=payload,
        defaults={"user_id": user_id, "sku": sku, "first_charge_id": charge_id,
                  "last_charge_id": charge_id, "expires_at": from_unix(expiration)},
    )
    if not created:
        subscription.last_charge_id = charge_id
        subscription.state = StarSubscription.State.ACTIVE
        subscription.expires_at = from_unix(expiration) or subscription.expires_at
        subscription.renewals += 1 if renewal else 0
        subscription.save()
    return subscription


def record_subscription_update(telegram_user_id: int, payload: str,
                               state: str) -> StarSubscription | None:
    """Apply a ``subscription`` update (canceled / active / failed); idempotent."""
    if state not in StarSubscription.State.values:
        return None
    with transaction.atomic():
        subscription = (StarSubscription.objects.select_for_update()
                        .filter(telegram_user_id=telegram_user_id, invoice_payload=payload)
                        .first())
        if subscription is not None and subscription.state != state:
            subscription.state = state
            subscription.save(update_fields=["state", "updated_at"])
    return subscription


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


async def set_subscription_canceled(bot: Bot, telegram_user_id: int, *,
                                    canceled: bool) -> StarSubscription:
    """Cancel (or re-enable) the user's latest subscription through ``editUserStarSubscription``.

    The state is recorded only after Telegram accepted the change.
    """
    subscription = await alatest_subscription(telegram_user_id)
    if subscription is None:
        raise SubscriptionNotFound()
    await bot.edit_user_star_subscription(
        user_id=telegram_user_id, telegram_payment_charge_id=subscription.first_charge_id,
        is_canceled=canceled,
    )
    state = StarSubscription.State.CANCELED if canceled else StarSubscription.State.ACTIVE
    updated = await arecord_subscription_update(telegram_user_id,
                                                subscription.invoice_payload, state)
    return updated or subscription


def subscription_sku(order: Any) -> str:
    """The SKU a subscription order (an ``OrderView`` or anything with a ``pk``) was for: its
    first item's."""
    skus = billing.order_skus(order.pk)
    if not skus:
        raise SubscriptionNotFound("Subscription order has no items")
    return skus[0]


__all__ = [
    "SUBSCRIPTION_PERIOD",
    "alatest_subscription",
    "aprepare_subscription",
    "arecord_subscription_update",
    "create_subscription_link",
    "from_unix",
    "latest_subscription",
    "prepare_subscription",
    "record_subscription_charge",
    "record_subscription_update",
    "set_subscription_canceled",
    "subscription_sku",
]
