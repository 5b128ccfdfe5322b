"""Outbound events: a durable outbox written with the change, delivered signed over HTTP.

* :mod:`billable.events.catalog` — the event types and how signals become events;
* :mod:`billable.events.outbox` — writing events and deliveries (in the change's transaction),
  replay;
* :mod:`billable.events.delivery` — the worker (``billable_deliver_events``, the Celery task
  ``billable.deliver_events``);
* :mod:`billable.events.signing` — the ``Billable-Signature`` header.

docs/events.md is the guide: catalogue, signature, retries, dead letter, replay, ordering.
"""

from billable.events.catalog import EVENT_TYPES, Event
from billable.events.delivery import Deliverer, Response, backoff, event_body
from billable.events.outbox import record, replay_deliveries, replay_events, write
from billable.events.signing import SIGNATURE_HEADER, sign, verify

__all__ = ["EVENT_TYPES", "SIGNATURE_HEADER", "Deliverer", "Event", "Response", "backoff",
           "event_body", "record", "replay_deliveries", "replay_events", "sign", "verify",
           "write"]
