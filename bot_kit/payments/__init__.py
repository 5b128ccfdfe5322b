"""Telegram Payments and Stars: invoices, pre-checkout, exactly-once confirmation, refunds,
subscriptions.

``create_payment_routers(config)`` returns the routers ``setup_billing`` includes first. The
services (``confirm_payment``, ``request_refund``, ``RefundOutbox`` …) live in the submodules
and can be used without the routers (e.g. from a webhook view or a management command).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

#: Public names re-exported lazily (importing them needs Django's app registry to be ready).
_LAZY = {
    "InvoicePayload": "payload", "sign_payload": "payload", "verify_payload": "payload",
    "prepare_invoice": "invoices", "aprepare_invoice": "invoices",
    "answer_pre_checkout": "precheckout",
    "PaymentFacts": "confirm", "confirm_payment": "confirm", "aconfirm_payment": "confirm",
    "RefundOutbox": "refunds", "request_refund": "refunds", "arequest_refund": "refunds",
    "attach_refund_worker": "refunds",
    "compare_charges": "reconcile",
}

if TYPE_CHECKING:
    from aiogram import Router

    from bot_kit.config import BillingConfig


def create_payment_routers(config: BillingConfig) -> list[Router]:
    """Routers of the purchase flow and of Stars subscriptions, included first by setup."""
    # app registry: the handlers load bot_kit.models, so they are imported on first use
    from bot_kit.payments.handlers import create_purchase_router
    from bot_kit.payments.subscription_handlers import create_subscription_router

    return [create_purchase_router(config), create_subscription_router(config)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bot_kit.payments' has no attribute {name!r}")
    return getattr(import_module(f"bot_kit.payments.{module}"), name)


__all__ = ["create_payment_routers", *_LAZY]
