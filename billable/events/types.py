"""Event type names and the :class:`Event` value (shared by the catalogue and its builders)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PAYMENT_CONFIRMED = "payment.confirmed"
ORDER_REFUNDED = "order.refunded"
ORDER_CANCELLED = "order.cancelled"
GRANT_CREATED = "grant.created"
QUOTA_EXHAUSTED = "quota.exhausted"
QUOTA_LOW = "quota.low"
BATCH_EXPIRED = "batch.expired"
BATCH_EXPIRING = "batch.expiring"
SUBSCRIPTION_RENEWED = "subscription.renewed"
SUBSCRIPTION_FAILED = "subscription.failed"
SUBSCRIPTION_CANCELLED = "subscription.cancelled"
CUSTOMER_MERGED = "customer.merged"
TRIAL_CLAIMED = "trial.claimed"

EVENT_TYPES: tuple[str, ...] = (
    PAYMENT_CONFIRMED, ORDER_REFUNDED, ORDER_CANCELLED, GRANT_CREATED, QUOTA_EXHAUSTED,
    QUOTA_LOW, BATCH_EXPIRED, SUBSCRIPTION_RENEWED, SUBSCRIPTION_FAILED, SUBSCRIPTION_CANCELLED,
    CUSTOMER_MERGED, TRIAL_CLAIMED, BATCH_EXPIRING,
)


@dataclass(frozen=True)
class Event:
    """An event to write: ``customer`` orders deliveries; ``dedupe_key`` (optional) makes a
    second identical event in the same change a no-op."""

    type: str
    customer: str
    data: dict[str, Any]
    dedupe_key: str = ""
