"""Delivering events: claim under a lease, POST outside any transaction, record the outcome.

* **Claim.** A short transaction selects due pending deliveries (``SELECT … FOR UPDATE SKIP
  LOCKED`` on PostgreSQL) and leases each: ``attempts + 1``, a fresh ``lease_token``, and
  ``next_attempt_at`` moved ``lease`` seconds ahead. Another worker neither sees a locked row
  nor a leased one (it is not due), so no delivery is in flight twice while its lease lasts;
  the lease outlives the HTTP timeout (system check ``billable.E005``).
* **Order per customer.** A delivery is due only when no earlier delivery of the same customer
  to the same endpoint is still pending (waiting, backing off or in flight): a customer's
  events reach an endpoint in the order they were written. A dead delivery no longer holds the
  line (and a replay of it arrives after the later ones).
* **Outcome.** A 2xx answer acknowledges the event. Anything else — another status, a timeout,
  a refused connection — schedules a retry after an exponential backoff with jitter, until
  ``max_attempts``: then the delivery is ``dead`` (replay it from the admin). A worker killed
  mid-delivery records nothing; the lease runs out and another attempt follows (at-least-once:
  receivers dedupe by the event id).
* **Undeliverable URL.** An endpoint saved without validation (``objects.create``) may hold a
  URL that is not ``http(s)://`` with a host. Nothing is sent to it: the attempt marks the
  delivery ``dead`` at once with the reason in ``last_error`` (retrying cannot fix a URL); fix
  the endpoint and replay.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from billable.conf import billable_settings
from billable.events import signing
from billable.events.urls import url_problem
from billable.models import EventDelivery

logger = logging.getLogger("billable.events")
MAX_RESPONSE_BYTES = 65536


@dataclass(frozen=True)
class Response:
    """What an endpoint answered: ``status`` None when no answer came (``error`` says why)."""

    status: int | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> Response:
    """POST ``body`` with the standard library; redirects are not followed. A URL that
    :func:`url_problem` refuses is never connected to."""
    if problem := url_problem(url):
        return Response(None, problem)
    parts = urlsplit(url)
    factory = (http.client.HTTPSConnection if parts.scheme == "https"
               else http.client.HTTPConnection)
    conn = factory(parts.hostname or "", parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(MAX_RESPONSE_BYTES)
        return Response(response.status)
    except (OSError, http.client.HTTPException) as exc:
        return Response(None, f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def event_body(event: Any) -> bytes:
    """The JSON body of an event: ``{"id", "type", "created_at", "data"}`` (same bytes on every
    attempt)."""
    document = {"id": str(event.event_id), "type": event.event_type,
                "created_at": event.created_at, "data": event.payload}
    return json.dumps(document, cls=DjangoJSONEncoder, separators=(",", ":"),
                      sort_keys=True).encode()


@dataclass(frozen=True)
class Job:
    """A claimed delivery: what the POST needs and the lease token that holds the row."""

    delivery_id: int
    token: str
    attempts: int
    url: str
    secret: str
    event_id: str
    event_type: str
    body: bytes


def backoff(attempts: int, *, base: float, cap: float) -> float:
    """Seconds before the next attempt after the ``attempts``-th failure: doubling from
    ``base``, capped at ``cap``, with "equal jitter" (a random point in its upper half)."""
    delay = min(cap, base * (2 ** max(attempts - 1, 0)))
    return delay / 2 + random.uniform(0, delay / 2)


class Deliverer:
    """Works the delivery outbox. Defaults come from ``BILLABLE_EVENTS_*``; ``send`` and
    ``clock`` are injectable (tests)."""

    def __init__(self, *, send: Callable[..., Response] = post,
                 clock: Callable[[], datetime] = timezone.now,
                 lease: float | None = None, timeout: float | None = None,
                 max_attempts: int | None = None, base_delay: float | None = None,
                 max_delay: float | None = None) -> None:
        s = billable_settings
        self.send = send
        self.clock = clock
        self.lease = float(s.EVENTS_LEASE if lease is None else lease)
        self.timeout = float(s.EVENTS_TIMEOUT if timeout is None else timeout)
        self.max_attempts = int(s.EVENTS_MAX_ATTEMPTS if max_attempts is None else max_attempts)
        self.base_delay = float(s.EVENTS_RETRY_BASE if base_delay is None else base_delay)
        self.max_delay = float(s.EVENTS_RETRY_MAX if max_delay is None else max_delay)

    def due(self) -> Any:
        """Pending deliveries due now, to active endpoints, first in their customer's line."""
        pending = EventDelivery.State.PENDING
        earlier = EventDelivery.objects.filter(
            endpoint_id=OuterRef("endpoint_id"), customer_id=OuterRef("customer_id"),
            state=pending, id__lt=OuterRef("id"))
        return (EventDelivery.objects
                .filter(state=pending, next_attempt_at__lte=self.clock(),
                        endpoint__is_active=True)
                .filter(Q(customer_id="") | ~Exists(earlier)))

    def claim(self, *, limit: int = 10) -> list[Job]:
        """Lease up to ``limit`` due deliveries (skipping rows another worker holds)."""
        now, token = self.clock(), uuid.uuid4().hex
        skip = connection.features.has_select_for_update_skip_locked
        with transaction.atomic():
            ids = list(self.due().select_for_update(skip_locked=skip, of=("self",))
                       .order_by("id").values_list("id", flat=True)[:limit])
            if not ids:
                return []
            EventDelivery.objects.filter(pk__in=ids, state=EventDelivery.State.PENDING).update(
                attempts=F("attempts") + 1, lease_token=token,
                next_attempt_at=now + timedelta(seconds=self.lease))
            rows = (EventDelivery.objects.filter(pk__in=ids, lease_token=token)
                    .select_related("event", "endpoint").order_by("id"))
            return [Job(row.pk, token, row.attempts, row.endpoint.url, row.endpoint.secret,
                        str(row.event.event_id), row.event.event_type, event_body(row.event))
                    for row in rows]

    def attempt(self, job: Job) -> str:
        """POST one claimed delivery and record the outcome; return the resulting state.

        A URL that cannot take a POST (:func:`url_problem`) is dead at once, nothing sent."""
        if problem := url_problem(job.url):
            logger.error("event %s not sent to %r: %s", job.event_id, job.url, problem)
            return self.mark_failed(job, problem, None, final=True)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "billable-events/1",
            signing.EVENT_ID_HEADER: job.event_id,
            signing.EVENT_TYPE_HEADER: job.event_type,
            signing.SIGNATURE_HEADER: signing.sign(job.secret, job.body),
        }
        try:
            response = self.send(job.url, job.body, headers, timeout=self.timeout)
        except Exception as exc:  # a broken transport is one more failed attempt
            response = Response(None, f"{type(exc).__name__}: {exc}")
        if response.ok:
            return self.mark_delivered(job, response.status)
        error = response.error or f"HTTP {response.status}"
        logger.warning("event %s to %s failed (attempt %s): %s", job.event_id, job.url,
                       job.attempts, error)
        return self.mark_failed(job, error, response.status)

    def mark_delivered(self, job: Job, status: int | None) -> str:
        EventDelivery.objects.filter(pk=job.delivery_id, lease_token=job.token).update(
            state=EventDelivery.State.DELIVERED, delivered_at=self.clock(), last_status=status,
            last_error="", lease_token="")
        return str(EventDelivery.State.DELIVERED)

    def mark_failed(self, job: Job, error: str, status: int | None, *,
                    final: bool = False) -> str:
        """Record a failed attempt: retry after the backoff, or ``dead`` after the last
        attempt (or at once when ``final``)."""
        dead = final or job.attempts >= self.max_attempts
        state = EventDelivery.State.DEAD if dead else EventDelivery.State.PENDING
        wait = backoff(job.attempts, base=self.base_delay, cap=self.max_delay)
        EventDelivery.objects.filter(pk=job.delivery_id, lease_token=job.token,
                                     state=EventDelivery.State.PENDING).update(
            state=state, last_error=error[:2000], last_status=status, lease_token="",
            next_attempt_at=self.clock() + timedelta(seconds=wait))
        return str(state)

    def run_once(self, *, limit: int = 100,
                 progress: Callable[[str], None] | None = None) -> dict[str, int]:
        """Deliver what is due now, up to ``limit`` attempts; return counts per outcome."""
        counts: dict[str, int] = {}
        done = 0
        while done < limit:
            jobs = self.claim(limit=1)  # one at a time: each lease starts as its POST does
            if not jobs:
                break
            for job in jobs:
                state = self.attempt(job)
                counts[state] = counts.get(state, 0) + 1
                done += 1
                if progress is not None:
                    progress(state)
        return counts


__all__ = ["Deliverer", "Job", "Response", "backoff", "event_body", "post", "url_problem"]
