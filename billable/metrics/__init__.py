"""Optional Prometheus metrics of billable (``pip install billable[metrics]``).

Without ``prometheus-client`` every function here is a no-op and the kit runs unchanged.

* Counters, updated through billable's signals and a few call sites:
  ``billable_payments_total{outcome,currency,method}``, ``billable_payment_failures_total``,
  ``billable_payment_amount_total``, ``billable_consumes_total``,
  ``billable_consumed_units_total``, ``billable_paywalls_total``, ``billable_holds_expired_total``,
  ``billable_batches_expired_total``, ``billable_api_requests_total{method,route,status}`` and
  ``billable_api_request_duration_seconds``.
* Backlog gauges measured at scrape time (:mod:`billable.metrics.backlogs`), one line to add one.
* The exposition endpoint :func:`billable.metrics.views.metrics_view`, and
  :func:`start_http_server` for processes without a web server (bot, Celery worker).

``docs/metrics.md`` lists every metric with dashboard queries.
"""

from __future__ import annotations

from typing import Any

from billable.metrics import receivers, server
from billable.metrics.backlogs import (
    BacklogCollector,
    event_deliveries,
    holds_overdue,
    register_backlog,
    registered_backlogs,
    unregister_backlog,
)
from billable.metrics.instruments import (
    enabled,
    record_api_request,
    record_consume,
    record_expiry,
    record_payment,
    record_paywall,
)

_installed = False


def install() -> None:
    """Connect the signal receivers and register the backlog collector (once per process).

    Called by ``BillableConfig.ready``; a no-op without ``prometheus-client``.
    """
    global _installed
    if _installed or not enabled():
        return
    # reason: optional dependency (billable[metrics]): imported only when installed
    import prometheus_client

    receivers.connect()
    register_backlog("holds_overdue", holds_overdue, age_field="expires_at")
    register_backlog("events", event_deliveries)
    prometheus_client.REGISTRY.register(BacklogCollector())
    _installed = True


def start_http_server(port: int, addr: str = "127.0.0.1") -> Any:
    """Serve this process's metrics on ``addr:port`` (for bot and worker processes).

    Unauthenticated: bind it to a private interface. Returns ``(server, thread)`` — call
    ``server.shutdown()`` to stop it — or ``None`` without ``prometheus-client``.
    """
    if not enabled():
        return None
    return server.start_http_server(port, addr)


__all__ = [
    "enabled",
    "install",
    "record_api_request",
    "record_consume",
    "record_expiry",
    "record_payment",
    "record_paywall",
    "register_backlog",
    "registered_backlogs",
    "start_http_server",
    "unregister_backlog",
]
