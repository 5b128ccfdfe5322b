"""Signal receivers that count payments and consumptions (connected in ``BillableConfig.ready``).

Signals are sent after the commit, so nothing rolled back is ever counted. Receivers are light
(at most one cached query per quota batch, for its product key) and are connected only when
``prometheus-client`` is installed.
"""

from __future__ import annotations

import functools
from typing import Any

from billable import signals
from billable.metrics import instruments


def on_order_confirmed(sender: Any, order: Any, **kwargs: Any) -> None:
    instruments.record_payment("confirmed", currency=order.currency,
                               method=order.payment_method, amount=order.total_amount)


def on_order_refunded(sender: Any, order: Any, **kwargs: Any) -> None:
    instruments.record_payment("refunded", currency=order.currency,
                               method=order.payment_method, amount=order.total_amount)


def on_quota_consumed(sender: Any, usage: Any, **kwargs: Any) -> None:
    instruments.record_consume(product_of_batch(usage.quota_batch_id), int(usage.amount or 0))


@functools.lru_cache(maxsize=10_000)
def product_of_batch(batch_id: Any) -> str | None:
    """The product key of a batch (never changes, so cached: one query per batch)."""
    # reason: importable before the app registry is ready (billable.metrics is)
    from billable.models import QuotaBatch

    return (QuotaBatch.objects.filter(pk=batch_id)
            .values_list("product__product_key", flat=True).first())


def connect() -> None:
    """Connect the receivers (idempotent: ``dispatch_uid``)."""
    if not instruments.enabled():
        return
    signals.order_confirmed.connect(on_order_confirmed, dispatch_uid="billable.metrics.paid")
    signals.order_refunded.connect(on_order_refunded, dispatch_uid="billable.metrics.refunded")
    signals.quota_consumed.connect(on_quota_consumed, dispatch_uid="billable.metrics.consumed")


__all__ = ["connect"]
