"""What bot_kit tells the host: event objects, Django signals and ``BillingConfig`` callbacks.

Each event is reported **once**: a service emits its Django signal only for the transition it
made (a redelivered update finds the transition already done and emits nothing), through
``transaction.on_commit`` so a receiver never sees a rolled-back change. The kit's handlers call
the matching ``BillingConfig`` callback (``on_paid``, ``on_refunded``,
``on_subscription_changed``, ``on_quota_exhausted``) after the change is committed, under the
same rule. A callback that raises is logged and ignored: it never undoes a payment.

Signals (``sender`` is the bot_kit model class, ``event`` the dataclass below)::

    payment_confirmed      PaymentEvent       a charge was honoured (first payment or renewal)
    payment_refunded       RefundEvent        a charge's grant was reversed
    subscription_changed   SubscriptionEvent  a Stars subscription changed state
    quota_exhausted        QuotaEvent         a gated command met an empty balance (paywall)
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger("bot_kit.events")

payment_confirmed = Signal()
payment_refunded = Signal()
subscription_changed = Signal()
quota_exhausted = Signal()


@dataclass(frozen=True)
class PaymentEvent:
    """A charge was honoured: the order is paid and its products granted."""

    telegram_user_id: int
    user_id: int | None
    charge_id: str
    order_id: int | None
    sku: str
    currency: str
    total_amount: int
    is_renewal: bool = False


@dataclass(frozen=True)
class RefundEvent:
    """A charge was refunded and what it granted was revoked."""

    telegram_user_id: int
    user_id: int | None
    charge_id: str
    order_id: int | None
    currency: str
    total_amount: int
    subscription_sku: str = ""


@dataclass(frozen=True)
class SubscriptionEvent:
    """A Stars subscription changed: ``state`` is ``active`` / ``canceled`` / ``failed``;
    ``reason`` says why (``subscribed``, ``renewed``, ``canceled``, ``resumed``, ``failed``,
    ``refunded``)."""

    telegram_user_id: int
    user_id: int | None
    sku: str
    state: str
    previous_state: str
    reason: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class QuotaEvent:
    """A gated command found the user's balance of ``product_key`` empty."""

    telegram_user_id: int | None
    user_id: int | None
    product_key: str


def send_on_commit(signal: Signal, sender: Any, event: Any) -> None:
    """Send ``signal`` once the surrounding transaction commits (at once outside one)."""
    def send() -> None:
        try:
            signal.send(sender=sender, event=event)
        except Exception:
            logger.exception("a %s receiver failed", type(event).__name__)

    transaction.on_commit(send)


async def call_host(callback: Any, event: Any) -> None:
    """Run a ``BillingConfig`` callback (sync or async); its failure is logged, not raised."""
    if callback is None:
        return
    try:
        result = callback(event)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("BillingConfig callback %r failed for %s", callback,
                         type(event).__name__)


__all__ = [
    "PaymentEvent",
    "QuotaEvent",
    "RefundEvent",
    "SubscriptionEvent",
    "call_host",
    "payment_confirmed",
    "payment_refunded",
    "quota_exhausted",
    "send_on_commit",
    "subscription_changed",
]
