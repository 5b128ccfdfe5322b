"""Signal receivers that count payments and consumptions (connected in ``BillableConfig.ready``).

Signals are sent after the commit, so nothing rolled back is ever counted. Receivers are light
(at most one cached query per quota batch, for its product key) and are connected only when
``prometheus-client`` is installed. Consumption is counted through the engine's usage counter
hook (``billable.signals.install_usage_counter``), also after the commit, so a charge made in
the event loop counts there without a thread hop.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from billable import signals
from billable.metrics import instruments


def on_order_confirmed(sender: Any, order: Any, **kwargs: Any) -> None:
    instruments.record_payment("confirmed", currency=order.currency,
                               method=order.payment_method, amount=order.total_amount)


def on_order_refunded(sender: Any, order: Any, **kwargs: Any) -> None:
    instruments.record_payment("refunded", currency=order.currency,
                               method=order.payment_method, amount=order.total_amount)


def count_consumed(batch_id: Any, units: int) -> None:
    """Count one committed consumption (sync writers; a query on the batch's first use)."""
    instruments.record_consume(product_of_batch(batch_id), units)


async def acount_consumed(batch_id: Any, units: int) -> None:
    """Async twin of :func:`count_consumed`: no thread hop once the batch's product is cached
    (the gated fast path charges in the event loop)."""
    product = _PRODUCTS.get(batch_id, _MISSING)
    if product is _MISSING:
        product = await sync_to_async(product_of_batch)(batch_id)
    instruments.record_consume(product, units)


#: ``batch id → product key`` (a batch's product never changes); bounded, dropped when full.
_PRODUCTS: dict[Any, str | None] = {}
_PRODUCTS_LIMIT = 10_000
_MISSING = object()


def product_of_batch(batch_id: Any) -> str | None:
    """The product key of a batch (never changes, so cached: one query per batch)."""
    found = _PRODUCTS.get(batch_id, _MISSING)
    if found is not _MISSING:
        return found  # type: ignore[return-value]
    # reason: importable before the app registry is ready (billable.metrics is)
    from billable.models import QuotaBatch

    key = (QuotaBatch.objects.filter(pk=batch_id)
           .values_list("product__product_key", flat=True).first())
    if len(_PRODUCTS) >= _PRODUCTS_LIMIT:
        _PRODUCTS.clear()
    _PRODUCTS[batch_id] = key
    return key


def connect() -> None:
    """Connect the receivers (idempotent: ``dispatch_uid``)."""
    if not instruments.enabled():
        return
    signals.order_confirmed.connect(on_order_confirmed, dispatch_uid="billable.metrics.paid")
    signals.order_refunded.connect(on_order_refunded, dispatch_uid="billable.metrics.refunded")
    # consumption is counted by the engine, not by a quota_consumed receiver: no model is built
    # for it, and an async charge counts in its event loop (docs/performance.md)
    signals.install_usage_counter(count=count_consumed, acount=acount_consumed)


__all__ = ["connect"]
