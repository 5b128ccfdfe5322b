"""The event catalogue: every event type, and how a billable signal becomes events.

Each :class:`Source` maps one signal to the event types it can produce and a builder that
turns the signal's arguments into :class:`Event` values (type, customer, data). Builders run
inside the sender's transaction, so what they read is what the change wrote. docs/events.md
shows every type's ``data``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.dispatch import Signal

from billable import signals
from billable.events import quota
from billable.events.types import (  # re-exported: the catalogue's names
    BATCH_EXPIRED,
    BATCH_EXPIRING,
    CUSTOMER_MERGED,
    EVENT_TYPES,
    GRANT_CREATED,
    ORDER_CANCELLED,
    ORDER_REFUNDED,
    PAYMENT_CONFIRMED,
    QUOTA_EXHAUSTED,
    QUOTA_LOW,
    SUBSCRIPTION_CANCELLED,
    SUBSCRIPTION_FAILED,
    SUBSCRIPTION_RENEWED,
    TRIAL_CLAIMED,
    Event,
)
from billable.models import OrderItem, QuotaBatch, Transaction


@dataclass(frozen=True)
class Source:
    """A signal, the event types it may produce, and its builder."""

    signal: Signal
    types: frozenset[str]
    build: Callable[..., list[Event]] = field(compare=False)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def order_data(order: Any) -> dict[str, Any]:
    """An order as event data: totals, payment and its lines (one query for the lines)."""
    lines = OrderItem.objects.filter(order_id=order.pk).select_related("offer").order_by("id")
    return {
        "order_id": order.pk,
        "user_id": order.user_id,
        "status": order.status,
        "total_amount": str(order.total_amount),
        "currency": order.currency,
        "payment_method": order.payment_method,
        "payment_id": order.payment_id,
        "created_at": order.created_at,
        "paid_at": order.paid_at,
        "metadata": order.metadata,
        "items": [{"sku": line.offer.sku, "quantity": line.quantity, "price": str(line.price)}
                  for line in lines],
    }


def _order_event(kind: str) -> Callable[..., list[Event]]:
    def build(*, order: Any, **_: Any) -> list[Event]:
        return [Event(kind, _text(order.user_id), order_data(order))]

    return build


def _batch_facts(batch_id: Any) -> dict[str, Any]:
    batch = QuotaBatch.objects.select_related("product", "source_offer").get(pk=batch_id)
    return {
        "batch_id": str(batch.pk),
        "product_key": batch.product.product_key,
        "valid_from": batch.valid_from,
        "expires_at": batch.expires_at,
        "offer_sku": batch.source_offer.sku if batch.source_offer else None,
        "order_item_id": batch.order_item_id,
    }


def from_transaction(*, transaction: Any, **_: Any) -> list[Event]:
    """A CREDIT row is a grant (``grant.created``); an ``expiration`` DEBIT is an expired batch
    that still had units (``batch.expired``). Other rows produce no event."""
    customer = _text(transaction.user_id)
    if transaction.direction == Transaction.Direction.CREDIT:
        data = {"user_id": transaction.user_id, "quantity": transaction.amount,
                "source": transaction.action_type, **_batch_facts(transaction.quota_batch_id)}
        return [Event(GRANT_CREATED, customer, data)]
    if transaction.action_type == "expiration":
        data = {"user_id": transaction.user_id, "expired_quantity": transaction.amount,
                **_batch_facts(transaction.quota_batch_id)}
        return [Event(BATCH_EXPIRED, customer, data)]
    return []


def from_usage(*, usage: Any, **_: Any) -> list[Event]:
    """``quota.exhausted`` when a consumption leaves nothing of the product, ``quota.low`` when
    it crosses the configured threshold (once per change and product)."""
    return quota.events_after(usage)


def _trial(*, user_id: Any, products: Any, **_: Any) -> list[Event]:
    return [Event(TRIAL_CLAIMED, _text(user_id), {"user_id": user_id,
                                                  "products": list(products or [])})]


def _merged(*, target_user_id: Any, source_user_id: Any, **_: Any) -> list[Event]:
    return [Event(CUSTOMER_MERGED, _text(target_user_id),
                  {"target_user_id": target_user_id, "source_user_id": source_user_id})]


def subscription_data(subscription: Any) -> dict[str, Any]:
    """A subscription row (bot_kit's ``StarSubscription`` or anything with the same fields)."""
    return {
        "subscription_id": subscription.pk,
        "user_id": subscription.user_id,
        "sku": subscription.sku,
        "state": subscription.state,
        "renewals": subscription.renewals,
        "expires_at": subscription.expires_at,
        "last_charge_id": subscription.last_charge_id,
    }


def _subscription_event(kind: str) -> Callable[..., list[Event]]:
    def build(*, subscription: Any, **_: Any) -> list[Event]:
        return [Event(kind, _text(subscription.user_id), subscription_data(subscription))]

    return build


def _alert_data(notice: Any, user_id: Any, product_key: Any) -> dict[str, Any]:
    return {"notice_id": notice.pk, "user_id": _text(user_id), "product_key": product_key,
            "batch_id": _text(notice.batch_id), "source": "alert"}


def _low_alert(*, notice: Any, user_id: Any, product_key: Any, balance: Any, threshold: Any,
               **_: Any) -> list[Event]:
    """A product's low-balance alert rule crossed (``billable.growth.alerts``; once per
    crossing per batch): ``quota.low`` with ``source="alert"``."""
    data = {**_alert_data(notice, user_id, product_key), "remaining": balance,
            "threshold": threshold}
    return [Event(QUOTA_LOW, _text(user_id), data, dedupe_key=f"alert:{notice.pk}")]


def _expiring_alert(*, notice: Any, user_id: Any, product_key: Any, expires_at: Any,
                    **_: Any) -> list[Event]:
    """A batch ends within its product's reminder window (once per batch)."""
    data = {**_alert_data(notice, user_id, product_key), "remaining": notice.balance,
            "expires_at": expires_at}
    return [Event(BATCH_EXPIRING, _text(user_id), data, dedupe_key=f"alert:{notice.pk}")]


SOURCES: tuple[Source, ...] = (
    Source(signals.order_confirmed, frozenset({PAYMENT_CONFIRMED}),
           _order_event(PAYMENT_CONFIRMED)),
    Source(signals.order_refunded, frozenset({ORDER_REFUNDED}), _order_event(ORDER_REFUNDED)),
    Source(signals.order_cancelled, frozenset({ORDER_CANCELLED}),
           _order_event(ORDER_CANCELLED)),
    Source(signals.transaction_created, frozenset({GRANT_CREATED, BATCH_EXPIRED}),
           from_transaction),
    Source(signals.quota_consumed, frozenset({QUOTA_EXHAUSTED, QUOTA_LOW}), from_usage),
    Source(signals.trial_activated, frozenset({TRIAL_CLAIMED}), _trial),
    Source(signals.customers_merged, frozenset({CUSTOMER_MERGED}), _merged),
    Source(signals.subscription_renewed, frozenset({SUBSCRIPTION_RENEWED}),
           _subscription_event(SUBSCRIPTION_RENEWED)),
    Source(signals.subscription_failed, frozenset({SUBSCRIPTION_FAILED}),
           _subscription_event(SUBSCRIPTION_FAILED)),
    Source(signals.subscription_cancelled, frozenset({SUBSCRIPTION_CANCELLED}),
           _subscription_event(SUBSCRIPTION_CANCELLED)),
    Source(signals.quota_low, frozenset({QUOTA_LOW}), _low_alert),
    Source(signals.batch_expiring, frozenset({BATCH_EXPIRING}), _expiring_alert),
)

_BY_SIGNAL: dict[int, Source] = {id(source.signal): source for source in SOURCES}


def source_of(signal: Signal) -> Source | None:
    """The :class:`Source` of ``signal`` (None: the signal produces no event)."""
    return _BY_SIGNAL.get(id(signal))


__all__ = ["EVENT_TYPES", "SOURCES", "Event", "Source", "order_data", "source_of",
           "subscription_data"]
