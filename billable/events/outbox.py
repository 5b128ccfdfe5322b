"""Writing the outbox: events and their deliveries, in the transaction of the change.

:func:`record` is called by :func:`billable.signals.send_on_commit` at call time — inside the
sender's transaction — so an event exists exactly when its change committed. Nothing is written
(and no payload is built) unless an active endpoint subscribes to one of the signal's types:
the set of subscribed types is cached per process for ``BILLABLE_EVENTS_ENDPOINTS_CACHE``
seconds and dropped whenever an endpoint is saved or deleted in this process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from django.db import DatabaseError, connections, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal
from django.utils import timezone

from billable import signals
from billable.conf import billable_settings
from billable.events.catalog import EVENT_TYPES, Event, source_of
from billable.models import EventDelivery, EventEndpoint, OutboxEvent

logger = logging.getLogger("billable.events")
ALL = "*"


class _SubscribedTypes:
    """The event types some active endpoint wants (``*``: every type), cached with a TTL."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: frozenset[str] | None = None
        self._read_at = 0.0

    def get(self, using: str | None = None) -> frozenset[str]:
        ttl = float(billable_settings.EVENTS_ENDPOINTS_CACHE)
        with self._lock:
            if self._value is not None and time.monotonic() - self._read_at < ttl:
                return self._value
        types: set[str] = set()
        for wanted in EventEndpoint.objects.db_manager(using).filter(
                is_active=True).values_list("event_types", flat=True):
            types.update(wanted or [ALL])
        value = frozenset(types)
        with self._lock:
            self._value, self._read_at = value, time.monotonic()
        return value

    def cached(self) -> frozenset[str] | None:
        """The cached value while it is fresh, else ``None`` (never queries)."""
        ttl = float(billable_settings.EVENTS_ENDPOINTS_CACHE)
        with self._lock:
            if self._value is not None and time.monotonic() - self._read_at < ttl:
                return self._value
        return None

    def clear(self, **_: Any) -> None:
        with self._lock:
            self._value = None


subscribed_types = _SubscribedTypes()


def connect() -> None:
    """Install the outbox into :mod:`billable.signals` and drop the cached subscribed types
    whenever an endpoint changes (``AppConfig.ready``)."""
    signals.install_outbox(record=record, wanted=signal_wanted, cached=signal_wanted_cached)
    post_save.connect(subscribed_types.clear, sender=EventEndpoint,
                      dispatch_uid="billable.events.endpoints.saved")
    post_delete.connect(subscribed_types.clear, sender=EventEndpoint,
                        dispatch_uid="billable.events.endpoints.deleted")


def wants(types: Iterable[str], using: str | None = None) -> bool:
    """Whether an active endpoint subscribes to one of ``types`` (cached)."""
    subscribed = subscribed_types.get(using)
    return bool(subscribed) and (ALL in subscribed or not subscribed.isdisjoint(types))


def signal_wanted(signal: Signal, using: str | None = None) -> bool:
    """Whether sending ``signal`` would write an event."""
    source = source_of(signal)
    return source is not None and wants(source.types, using)


def signal_wanted_cached(signal: Signal, using: str | None = None) -> bool | None:
    """:func:`signal_wanted` from the endpoint cache only; ``None`` when the cache is stale."""
    source = source_of(signal)
    if source is None:
        return False
    subscribed = subscribed_types.cached()
    if subscribed is None:
        return None
    return bool(subscribed) and (ALL in subscribed or not subscribed.isdisjoint(source.types))


def record(signal: Signal, sender: Any, kwargs: dict[str, Any],
           using: str | None = None) -> list[Any]:
    """Write the events ``signal`` carries and their deliveries; return the events written.

    Run inside the sender's transaction. A builder bug is logged and skipped (it must not
    fail a payment); a database error propagates and rolls the change back with its events.
    """
    source = source_of(signal)
    if source is None or not wants(source.types, using):
        return []
    try:
        events = source.build(sender=sender, **kwargs)
    except DatabaseError:
        raise
    except Exception:
        logger.exception("building %s events failed; none written", sorted(source.types))
        return []
    alias = using or "default"
    if connections[alias].in_atomic_block:
        return [row for event in events if (row := write(event, using=using)) is not None]
    with transaction.atomic(using=alias):  # autocommit caller: event and deliveries together
        return [row for event in events if (row := write(event, using=using)) is not None]


def write(event: Event, *, using: str | None = None) -> Any:
    """Write one event and a delivery per active endpoint accepting it (None: nobody wants it,
    or an event with the same ``dedupe_key`` already exists)."""
    endpoints = [endpoint for endpoint in EventEndpoint.objects.db_manager(using).filter(
        is_active=True) if endpoint.accepts(event.type)]
    if not endpoints:
        return None
    events = OutboxEvent.objects.db_manager(using)
    if event.dedupe_key and events.filter(dedupe_key=event.dedupe_key).exists():
        return None
    now = timezone.now()
    row = events.create(event_type=event.type, customer_id=event.customer[:64],
                        payload=event.data, dedupe_key=event.dedupe_key[:200], created_at=now)
    EventDelivery.objects.db_manager(using).bulk_create([
        EventDelivery(event=row, endpoint=endpoint, customer_id=row.customer_id,
                      next_attempt_at=now, created_at=now)
        for endpoint in endpoints
    ])
    return row


def replay_deliveries(deliveries: Any) -> int:
    """Re-arm deliveries (any state) for an immediate new series of attempts; return how many."""
    return int(deliveries.update(state=EventDelivery.State.PENDING, attempts=0,
                                 next_attempt_at=timezone.now(), lease_token="", last_error="",
                                 delivered_at=None))


def replay_events(events: Any) -> int:
    """Replay events to every endpoint that accepts them now: re-arm their deliveries and add
    one for an accepting active endpoint that has none (e.g. added later); return how many."""
    endpoints = list(EventEndpoint.objects.filter(is_active=True))
    count = replay_deliveries(EventDelivery.objects.filter(event__in=events))
    now = timezone.now()
    for event in events:
        have = set(event.deliveries.values_list("endpoint_id", flat=True))
        missing = [EventDelivery(event=event, endpoint=endpoint, customer_id=event.customer_id,
                                 next_attempt_at=now, created_at=now)
                   for endpoint in endpoints
                   if endpoint.pk not in have and endpoint.accepts(event.event_type)]
        EventDelivery.objects.bulk_create(missing)
        count += len(missing)
    return count


def send_test_event(endpoint: Any) -> Any:
    """Queue a ``ping`` event to ``endpoint`` alone (the admin's "send a test event")."""
    now = timezone.now()
    row = OutboxEvent.objects.create(event_type="ping", payload={"endpoint_id": endpoint.pk},
                                     created_at=now)
    EventDelivery.objects.create(event=row, endpoint=endpoint, next_attempt_at=now,
                                 created_at=now)
    return row


__all__ = ["ALL", "EVENT_TYPES", "connect", "record", "replay_deliveries", "replay_events",
           "send_test_event", "signal_wanted", "signal_wanted_cached", "subscribed_types", "wants",
           "write"]
