"""Errors of the purchase flow, rooted in ``billable``'s hierarchy (each with a stable code)."""

from __future__ import annotations

from billable.exceptions import BillableError, ConflictError, InvalidInput, NotFound, _


class PaymentsMisconfigured(BillableError):
    """``BillingConfig`` lacks what payments need (e.g. no ``signing_secrets``)."""

    code = "payments_misconfigured"
    default_message = _("Payments are not configured")


class InvalidPayload(InvalidInput):
    """An invoice payload is malformed, unsigned or tampered with."""

    code = "invalid_payload"
    default_message = _("Invalid invoice payload")


class NotPurchasable(InvalidInput):
    """The offer cannot be sold in chat (inactive, free, fiat without a provider, bad price)."""

    code = "not_purchasable"
    default_message = _("This offer cannot be bought here")


class PaymentNotFound(NotFound):
    """No recorded Telegram payment matches the charge id or order id."""

    code = "payment_not_found"
    default_message = _("Payment not found")


class RefundNotAllowed(ConflictError):
    """The payment was already refunded (or a refund is already under way)."""

    code = "refund_not_allowed"
    default_message = _("This payment cannot be refunded")


class SubscriptionNotFound(NotFound):
    """The user has no Stars subscription that matches."""

    code = "subscription_not_found"
    default_message = _("Subscription not found")


class AlreadySubscribed(ConflictError):
    """The user already has an active subscription to this offer."""

    code = "already_subscribed"
    default_message = _("Already subscribed to this offer")


__all__ = [
    "AlreadySubscribed",
    "InvalidPayload",
    "NotPurchasable",
    "PaymentNotFound",
    "PaymentsMisconfigured",
    "RefundNotAllowed",
    "SubscriptionNotFound",
]
