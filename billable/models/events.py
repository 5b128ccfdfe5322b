"""Outbound events: endpoints, the durable event outbox and one delivery row per endpoint.

An :class:`OutboxEvent` is written in the same database transaction as the change it reports
(``billable.events.record``), together with one :class:`EventDelivery` per active endpoint whose
filter accepts its type. A rolled-back change therefore never produces an event, and a committed
one always has its deliveries. ``billable_deliver_events`` works the pending deliveries.
"""

from __future__ import annotations

import secrets
import uuid

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


def new_secret() -> str:
    """A fresh signing secret (``whsec_`` + 32 random bytes, URL-safe)."""
    return "whsec_" + secrets.token_urlsafe(32)


class EventEndpoint(models.Model):
    """An HTTP endpoint that receives signed events.

    ``event_types`` lists the types it wants; an empty list means every type. ``secret`` signs
    each delivery (``Billable-Signature``); an inactive endpoint gets no new deliveries, and its
    pending ones wait until it is active again.
    """

    name = models.CharField(max_length=100, blank=True, default="")
    url = models.URLField(max_length=500)
    event_types = models.JSONField(default=list, blank=True,
                                   help_text="Event types to send; empty: every type.")
    secret = models.CharField(max_length=128, default=new_secret)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billable_event_endpoints"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name or self.url

    def clean(self) -> None:
        """Refuse a configuration that could never deliver: a URL that is not ``http(s)://``
        with a host (the deliverer's ``url_problem``), ``event_types`` that is not a list of
        catalogued type names (``ping`` included), an empty secret. Run by the admin's form
        and ``full_clean()``."""
        # the event package imports the models
        from billable.events.types import EVENT_TYPES
        from billable.events.urls import url_problem

        errors: dict[str, str] = {}
        if url_problem(str(self.url or "")):  # the deliverer's own rule
            errors["url"] = "Events are POSTed over HTTP: use an http:// or https:// URL."
        known = {*EVENT_TYPES, "ping"}
        types = self.event_types
        if not isinstance(types, list) or not all(isinstance(kind, str) for kind in types):
            errors["event_types"] = "A list of event type names (empty: every type)."
        elif unknown := sorted(set(types) - known):
            errors["event_types"] = f"Unknown event types: {', '.join(unknown)}."
        if not str(self.secret or "").strip():
            errors["secret"] = "An endpoint needs a signing secret."
        if errors:
            raise ValidationError(errors)

    def accepts(self, event_type: str) -> bool:
        """Whether this endpoint subscribes to ``event_type``."""
        return not self.event_types or event_type in self.event_types


class OutboxEvent(models.Model):
    """One event, immutable once written: ``event_id`` is the stable id receivers dedupe by."""

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    event_type = models.CharField(max_length=50, db_index=True)
    customer_id = models.CharField(max_length=64, blank=True, default="", db_index=True,
                                   help_text="The billing account the event is about "
                                             "(deliveries are ordered per customer).")
    payload = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    dedupe_key = models.CharField(max_length=200, blank=True, default="", db_index=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billable_outbox_events"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class EventDelivery(models.Model):
    """The delivery of one event to one endpoint: retried until acknowledged or dead.

    A worker claims a due pending row by writing a fresh ``lease_token`` and moving
    ``next_attempt_at`` past the lease; a second worker skips it until the lease runs out.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        DEAD = "dead", "Dead"

    event = models.ForeignKey(OutboxEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(EventEndpoint, on_delete=models.CASCADE,
                                 related_name="deliveries")
    customer_id = models.CharField(max_length=64, blank=True, default="")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_token = models.CharField(max_length=32, blank=True, default="")
    last_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billable_event_deliveries"
        verbose_name_plural = "event deliveries"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"],
                                    name="billable_event_delivery_unique"),
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="billable_evdel_due_idx"),
            models.Index(fields=["endpoint", "customer_id", "state"],
                         name="billable_evdel_order_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.endpoint_id} ({self.state})"


__all__ = ["EventDelivery", "EventEndpoint", "OutboxEvent", "new_secret"]
