"""``successful_payment``: confirm the order exactly once per ``telegram_payment_charge_id``.

The ``TelegramPayment`` row (UNIQUE charge id) is inserted first, in the same
``transaction.atomic`` that pays the order through the billing port (``billing.pay_order``). A
redelivered update, a concurrent handler or a second bot process on the same PostgreSQL collides
on that UNIQUE key and returns the recorded outcome without granting again. A payment that
cannot be honoured is recorded as ``rejected`` and queued for an automatic refund in the same
transaction — but a database that fails mid-way (a transient error) rolls everything back and
raises, so the update is retried: an outage never turns a good payment into a refund.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction

from billable import metrics
from billable.exceptions import BillableError
from billable.logs import log_fields
from bot_kit import billing
from bot_kit.events import PaymentEvent, SubscriptionEvent, payment_confirmed, send_on_commit
from bot_kit.models import RefundRequest, TelegramPayment
from bot_kit.payments.payload import KIND_GIFT
from bot_kit.payments.precheckout import Charge, billing_user_id_for, check_charge
from bot_kit.payments.subscriptions import (
    active_subscription,
    charge_subscription,
    from_unix,
    subscription_sku,
)
from bot_kit.resilience import is_transient
from bot_kit.untrusted import storable

logger = logging.getLogger("bot_kit.payments")

STARS_METHOD = "telegram_stars"
FIAT_METHOD = "telegram_payments"


@dataclass(frozen=True)
class PaymentFacts:
    """The parts of a ``SuccessfulPayment`` (and its payer) that confirmation needs."""

    telegram_user_id: int
    charge_id: str
    payload: str
    currency: str
    total_amount: int
    provider_charge_id: str = ""
    is_recurring: bool = False
    is_first_recurring: bool = False
    subscription_expiration_date: int | None = None

    @classmethod
    def from_message(cls, telegram_user_id: int, payment: Any) -> PaymentFacts:
        """Build from an aiogram ``SuccessfulPayment``."""
        return cls(
            telegram_user_id=telegram_user_id, charge_id=payment.telegram_payment_charge_id,
            payload=payment.invoice_payload, currency=payment.currency,
            total_amount=payment.total_amount,
            provider_charge_id=payment.provider_payment_charge_id or "",
            is_recurring=bool(payment.is_recurring),
            is_first_recurring=bool(payment.is_first_recurring),
            subscription_expiration_date=payment.subscription_expiration_date,
        )

    @property
    def is_renewal(self) -> bool:
        return self.is_recurring and not self.is_first_recurring


@dataclass(frozen=True)
class ConfirmResult:
    """Outcome: ``created`` is False for a charge seen before (send nothing again)."""

    payment: TelegramPayment
    created: bool
    refund_id: int | None = None
    order_id: int | None = None
    summary: str = ""
    #: What was paid for, once (``None`` for a charge seen before or a rejected one).
    event: PaymentEvent | None = None
    #: The offer SKU of the paid order.
    sku: str = ""
    #: For a subscription charge: the subscription started or renewed (``None`` otherwise).
    subscription_event: SubscriptionEvent | None = None

    @property
    def confirmed(self) -> bool:
        return self.payment.status == TelegramPayment.Status.CONFIRMED


def _pay(facts: PaymentFacts, check: Any, user_id: int) -> billing.OrderView:
    """Pay the payload's order, or a fresh renewal order; returns the paid order."""
    method = STARS_METHOD if facts.currency.upper() == "XTR" else FIAT_METHOD
    order: billing.OrderView = check.order
    if check.payload.kind == KIND_GIFT:  # a gift: paid now, granted when claimed
        return billing.pay_gift_order(order.pk, charge_id=facts.charge_id,
                                      method="telegram_stars")
    if check.payload.is_subscription and order.is_paid:
        # A renewal (check_charge lets a paid order through only for recurring payments).
        metadata = {"source": "telegram", "renewal_of": check.order.pk,
                    "telegram_user_id": facts.telegram_user_id}
        if order.metadata.get("bot_id") is not None:
            metadata["bot_id"] = order.metadata["bot_id"]  # the renewal belongs to its bot
        order = billing.create_order(user_id, subscription_sku(order), metadata=metadata)
    billing.pay_order(order.pk, payment_id=facts.charge_id, payment_method=method)
    return order


def _reject(payment: TelegramPayment, reason: str) -> None:
    payment.status = TelegramPayment.Status.REJECTED
    payment.reason = reason
    payment.save(update_fields=["status", "reason"])
    RefundRequest.objects.create(payment=payment, reason=f"automatic: {reason}",
                                 requested_by="auto")
    logger.warning("payment %s rejected (%s); refund queued", payment.charge_id, reason,
                   extra=log_fields(charge_id=payment.charge_id, customer_id=payment.user_id,
                                    reason=reason))
    transaction.on_commit(lambda: metrics.record_payment(
        "failed", currency=payment.currency, method="telegram", reason=reason))


def _honour(payment: TelegramPayment, facts: PaymentFacts, secrets: tuple[str, ...],
            user_id: int | None, bot_id: int | None = None) -> SubscriptionEvent | None:
    """Pay what ``payment`` is for, or reject it (and queue its refund); the subscription
    change it made, if any."""
    charge = Charge(telegram_user_id=facts.telegram_user_id, payload=facts.payload,
                    currency=facts.currency, total_amount=facts.total_amount)
    try:
        check = check_charge(charge, secrets, user_id=user_id, allow_paid=facts.is_recurring,
                             bot_id=bot_id)
    except BillableError as exc:  # e.g. no signing secrets configured
        _reject(payment, exc.code)
        return None
    if check.reason is not None or user_id is None:
        _reject(payment, check.reason or "wrong_buyer")
        return None
    if check.payload is not None and check.payload.is_subscription and not facts.is_renewal:
        current = active_subscription(facts.telegram_user_id, subscription_sku(check.order))
        if current is not None and current.first_charge_id != facts.charge_id:
            # A second, concurrent subscription to the same offer (pre-checkout declines it;
            # this catches one that got through): refund it and cancel it at Telegram.
            _reject(payment, "already_subscribed")
            return None
    event = None
    try:
        with transaction.atomic():
            order = _pay(facts, check, user_id)
            if check.payload is not None and check.payload.is_subscription:
                payment.subscription, event = charge_subscription(
                    user_id=user_id, telegram_user_id=facts.telegram_user_id,
                    sku=subscription_sku(order), payload=facts.payload,
                    charge_id=facts.charge_id, expiration=facts.subscription_expiration_date,
                    renewal=facts.is_renewal)
    except Exception as exc:
        if is_transient(exc):  # the database failed, not the order: retry the whole update
            raise
        logger.exception("payment %s could not be honoured", facts.charge_id,
                         extra=log_fields(charge_id=facts.charge_id, customer_id=user_id))
        _reject(payment, str(getattr(exc, "code", "error"))[:50])
        return None
    payment.order_id = order.pk
    payment.status = TelegramPayment.Status.CONFIRMED
    payment.save(update_fields=["order", "status", "subscription"])
    send_on_commit(payment_confirmed, TelegramPayment, payment_event(payment, facts))
    return event


def payment_event(payment: TelegramPayment, facts: PaymentFacts) -> PaymentEvent:
    """The ``PaymentEvent`` of a confirmed ``payment``."""
    return PaymentEvent(telegram_user_id=payment.telegram_user_id, user_id=payment.user_id,
                        charge_id=payment.charge_id, order_id=payment.order_id,
                        sku=_order_sku(payment.order_id), currency=payment.currency,
                        total_amount=payment.total_amount, is_renewal=facts.is_renewal)


def _order_sku(order_id: int | None) -> str:
    if order_id is None:
        return ""
    skus = billing.order_skus(order_id)
    return skus[0] if skus else ""


def _record(facts: PaymentFacts, secrets: tuple[str, ...],
            user_id: int | None, bot_id: int | None = None
            ) -> tuple[TelegramPayment, SubscriptionEvent | None]:
    with transaction.atomic():
        payment = TelegramPayment.objects.create(
            charge_id=facts.charge_id, provider_charge_id=facts.provider_charge_id,
            telegram_user_id=facts.telegram_user_id, user_id=user_id, bot_id=bot_id,
            currency=facts.currency.upper(), total_amount=facts.total_amount,
            invoice_payload=storable(facts.payload)[:255], status=TelegramPayment.Status.REJECTED,
            is_recurring=facts.is_recurring, is_first_recurring=facts.is_first_recurring,
            subscription_expires_at=from_unix(facts.subscription_expiration_date),
        )
        event = _honour(payment, facts, secrets, user_id, bot_id)
    return payment, event


def confirm_payment(facts: PaymentFacts, secrets: tuple[str, ...], *,
                    user_id: int | None = None, provider: str = "telegram",
                    bot_id: int | None = None) -> ConfirmResult:
    """Record ``facts`` and pay its order exactly once; see the module docstring.

    ``bot_id`` is the bot the payment arrived at: it is recorded (that bot refunds it) and a
    payment for an invoice of another bot is rejected and refunded (``wrong_bot``).
    """
    existing = TelegramPayment.objects.filter(charge_id=facts.charge_id).first()
    if existing is not None:
        return ConfirmResult(existing, created=False, order_id=existing.order_id)
    if user_id is None:
        user_id = billing_user_id_for(facts.telegram_user_id, provider)
    try:
        payment, subscription_event = _record(facts, tuple(secrets), user_id, bot_id)
    except IntegrityError:
        existing = TelegramPayment.objects.filter(charge_id=facts.charge_id).first()
        if existing is None:
            raise
        return ConfirmResult(existing, created=False, order_id=existing.order_id)
    refund_id = RefundRequest.objects.filter(payment=payment).values_list("pk", flat=True).first()
    event = (payment_event(payment, facts)
             if payment.status == TelegramPayment.Status.CONFIRMED else None)
    return ConfirmResult(payment, created=True, refund_id=refund_id, order_id=payment.order_id,
                         summary=billing.order_summary(payment.order_id), event=event,
                         sku=_order_sku(payment.order_id),
                         subscription_event=subscription_event)


async def aorder_summary(order_id: int | None, lang: str | None) -> str:
    """Async: the localized offer names of an order (for the receipt)."""
    return await sync_to_async(billing.order_summary)(order_id, lang)


async def aconfirm_payment(facts: PaymentFacts, secrets: tuple[str, ...], *,
                           user_id: int | None = None,
                           provider: str = "telegram",
                           bot_id: int | None = None) -> ConfirmResult:
    """Async twin of ``confirm_payment``."""
    return await sync_to_async(confirm_payment)(facts, secrets, user_id=user_id,
                                                provider=provider, bot_id=bot_id)


__all__ = ["ConfirmResult", "PaymentFacts", "aconfirm_payment", "confirm_payment"]
