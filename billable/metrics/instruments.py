"""The Prometheus instruments of billable, and the one-line calls that update them.

Every ``record_*`` function is a no-op when ``prometheus-client`` is not installed (the
``metrics`` extra), so the kit runs unchanged without it. The instruments live in
``prometheus_client``'s default registry, next to the host's own metrics.

Counters count what happened **in this process**: scrape every process that does the work (the
web server through :func:`billable.metrics.views.metrics_view`, bot and worker processes through
:func:`billable.metrics.start_http_server`) and ``sum`` them in PromQL.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

prometheus_client: Any
try:
    import prometheus_client
except ImportError:  # the "metrics" extra is not installed
    prometheus_client = None

#: Label value used when a label is unknown or empty.
UNKNOWN = "unknown"
#: Latency buckets of the API histogram, in seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def enabled() -> bool:
    """True when ``prometheus-client`` is installed (metrics are collected)."""
    return prometheus_client is not None


class _Instruments:
    """The metric objects, created once when ``prometheus-client`` is importable."""

    def __init__(self, pc: Any) -> None:
        counter, histogram = pc.Counter, pc.Histogram
        self.api_requests = counter(
            "billable_api_requests", "REST API requests by route and HTTP status.",
            ["method", "route", "status"])
        self.api_latency = histogram(
            "billable_api_request_duration_seconds", "REST API request duration.",
            ["method", "route"], buckets=LATENCY_BUCKETS)
        self.payments = counter(
            "billable_payments", "Payments by outcome: confirmed (order paid), refunded, "
            "failed (money arrived and could not be honoured, so it is refunded), declined "
            "(refused before money moved, e.g. at pre-checkout).",
            ["outcome", "currency", "method"])
        self.payment_failures = counter(
            "billable_payment_failures", "Failed and declined payments by stable reason code.",
            ["outcome", "reason"])
        self.payment_amount = counter(
            "billable_payment_amount", "Sum of confirmed and refunded order totals, in the "
            "order's currency units.", ["outcome", "currency"])
        self.consumes = counter(
            "billable_consumes", "Successful quota consumptions (ledger usage rows).",
            ["product"])
        self.consumed_units = counter(
            "billable_consumed_units", "Units of quota consumed.", ["product"])
        self.paywalls = counter(
            "billable_paywalls", "Users refused for lack of quota (a paywall was shown).",
            ["product", "channel"])
        self.expired_holds = counter(
            "billable_holds_expired", "Holds released because they expired uncommitted.", [])
        self.expired_batches = counter(
            "billable_batches_expired", "Quota batches moved to EXPIRED by the expiry job.", [])


_instruments = _Instruments(prometheus_client) if prometheus_client is not None else None


def _label(value: Any) -> str:
    text = str(value).strip() if value is not None else ""
    return text[:64] or UNKNOWN


def record_api_request(method: str, route: str, status: int, seconds: float) -> None:
    """One answered REST API request."""
    if _instruments is None:
        return
    _instruments.api_requests.labels(method, route, str(status)).inc()
    _instruments.api_latency.labels(method, route).observe(seconds)


def record_payment(outcome: str, *, currency: Any = None, method: Any = None,
                   amount: Decimal | int | float | None = None, reason: Any = None) -> None:
    """A payment ``confirmed``, ``refunded``, ``failed`` or ``declined`` (``method``: how it
    was paid; ``reason``: the stable code of a failure or decline)."""
    if _instruments is None:
        return
    _instruments.payments.labels(outcome, _label(currency), _label(method)).inc()
    if outcome in ("failed", "declined"):
        _instruments.payment_failures.labels(outcome, _label(reason)).inc()
    if amount is not None and outcome in ("confirmed", "refunded"):
        _instruments.payment_amount.labels(outcome, _label(currency)).inc(float(amount))


def record_consume(product: Any, units: int) -> None:
    """One successful consumption of ``units`` of ``product``."""
    if _instruments is None:
        return
    _instruments.consumes.labels(_label(product)).inc()
    _instruments.consumed_units.labels(_label(product)).inc(max(int(units), 0))


def record_paywall(product: Any, *, channel: str = "telegram") -> None:
    """A user was refused ``product`` for lack of quota and shown a paywall."""
    if _instruments is None:
        return
    _instruments.paywalls.labels(_label(product), channel).inc()


def record_expiry(*, holds: int = 0, batches: int = 0) -> None:
    """What one expiry run released (``holds``) and expired (``batches``)."""
    if _instruments is None:
        return
    _instruments.expired_holds.inc(max(int(holds), 0))
    _instruments.expired_batches.inc(max(int(batches), 0))


__all__ = [
    "enabled",
    "record_api_request",
    "record_consume",
    "record_expiry",
    "record_payment",
    "record_paywall",
]
