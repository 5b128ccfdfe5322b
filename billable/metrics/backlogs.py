"""Backlog gauges: how much work waits in a queue table, and how long the oldest item waited.

A backlog is registered with one line, by the app that owns the queue::

    register_backlog("refunds", lambda: RefundRequest.objects.filter(state="pending"))

and is read when Prometheus scrapes (one ``COUNT`` and one ``MIN`` on the queryset — give the
table an index on its pending state), as::

    billable_backlog_items{backlog="refunds"}                 3
    billable_backlog_oldest_age_seconds{backlog="refunds"}    41.5

billable registers ``holds_overdue`` (holds past their expiry that the expiry job has not
released yet) and ``events`` (outbound event deliveries not yet acknowledged); bot_kit
registers ``refunds`` (its refund outbox). A backlog whose query fails is left out of that
scrape and counted in ``billable_backlog_errors_total``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Min
from django.utils import timezone

logger = logging.getLogger("billable.metrics")


@dataclass(frozen=True)
class Backlog:
    """A named queue: ``pending()`` returns the queryset of waiting rows."""

    name: str
    pending: Callable[[], Any]
    age_field: str = "created_at"

    def measure(self) -> tuple[int, float | None]:
        """``(items, age of the oldest in seconds or None)``."""
        rows = self.pending()
        oldest = rows.aggregate(oldest=Min(self.age_field))["oldest"]
        if oldest is None:
            return 0, None
        return rows.count(), max((timezone.now() - oldest).total_seconds(), 0.0)


_BACKLOGS: dict[str, Backlog] = {}


def register_backlog(name: str, pending: Callable[[], Any], *,
                     age_field: str = "created_at") -> None:
    """Add (or replace) the backlog ``name``; call it from ``AppConfig.ready``."""
    _BACKLOGS[name] = Backlog(name, pending, age_field)


def unregister_backlog(name: str) -> None:
    """Stop measuring the backlog ``name`` (no error when unknown)."""
    _BACKLOGS.pop(name, None)


def registered_backlogs() -> list[Backlog]:
    """The registered backlogs, in registration order."""
    return list(_BACKLOGS.values())


class BacklogCollector:
    """A ``prometheus_client`` collector that measures every registered backlog per scrape."""

    def __init__(self) -> None:
        self.errors = 0

    def describe(self) -> list[Any]:
        return []  # measured at scrape time only (no queries at registration)

    def collect(self) -> Iterator[Any]:
        # reason: optional dependency (billable[metrics]): imported only when scraped
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        items = GaugeMetricFamily("billable_backlog_items", "Items waiting in a backlog.",
                                  labels=["backlog"])
        ages = GaugeMetricFamily("billable_backlog_oldest_age_seconds",
                                 "Seconds the oldest waiting item has waited (0: empty).",
                                 labels=["backlog"])
        for backlog in registered_backlogs():
            try:
                count, age = backlog.measure()
            except Exception as exc:  # a scrape must not fail because one table is missing
                self.errors += 1
                logger.warning("backlog %s could not be measured: %r", backlog.name, exc)
                continue
            items.add_metric([backlog.name], count)
            ages.add_metric([backlog.name], age or 0.0)
        yield items
        yield ages
        errors = CounterMetricFamily("billable_backlog_errors",
                                     "Backlog measurements that failed.")
        errors.add_metric([], self.errors)
        yield errors


def holds_overdue() -> Any:
    """Holds past their expiry, still ``HELD`` (the expiry job releases them)."""
    # reason: importable before the app registry is ready (billable.metrics is)
    from billable.models import Reservation

    return Reservation.objects.filter(state=Reservation.State.HELD,
                                      expires_at__lte=timezone.now())


def event_deliveries() -> Any:
    """Outbound event deliveries still pending (waiting, backing off or in flight)."""
    # reason: importable before the app registry is ready (billable.metrics is)
    from billable.models import EventDelivery

    return EventDelivery.objects.filter(state=EventDelivery.State.PENDING)


__all__ = ["Backlog", "BacklogCollector", "event_deliveries", "holds_overdue",
           "register_backlog",
           "registered_backlogs", "unregister_backlog"]
