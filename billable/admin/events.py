"""Outbound events in the admin: endpoints (with a test ping), the event log, deliveries.

Events and deliveries are read-only records; their one action is replay — a dead (or
delivered) delivery is re-armed for a fresh series of attempts, and an event can be replayed to
every endpoint that accepts it now. See docs/events.md.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from billable.admin.ledger import ReadOnlyAdminMixin
from billable.events.catalog import EVENT_TYPES
from billable.events.outbox import replay_deliveries, replay_events, send_test_event
from billable.models import EventDelivery, EventEndpoint, OutboxEvent


class EventEndpointForm(forms.ModelForm):
    """Event types as checkboxes (none checked: every type)."""

    event_types = forms.MultipleChoiceField(
        choices=[(kind, kind) for kind in EVENT_TYPES], widget=forms.CheckboxSelectMultiple,
        required=False, help_text=_("Leave every box empty to receive every event type."))

    url = forms.URLField(max_length=500, assume_scheme="https",
                         help_text=_("Where events are POSTed (http:// or https://)."))

    class Meta:
        model = EventEndpoint
        fields = ("name", "url", "event_types", "secret", "is_active")


@admin.register(EventEndpoint)
class EventEndpointAdmin(admin.ModelAdmin):
    form = EventEndpointForm
    list_display = ("__str__", "url", "type_list", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "url")
    actions = ["send_test"]

    @admin.display(description=_("Event types"))
    def type_list(self, obj: EventEndpoint) -> str:
        return ", ".join(obj.event_types or []) or gettext("every type")

    @admin.action(description=_("Send a test event (ping)"))
    def send_test(self, request: HttpRequest, queryset: QuerySet[EventEndpoint]) -> None:
        for endpoint in queryset:
            send_test_event(endpoint)
        text = gettext("Queued a ping to %(count)d endpoint(s).") % {"count": queryset.count()}
        self.message_user(request, text, messages.SUCCESS)


class EventDeliveryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = EventDelivery
    extra = 0
    fields = ("endpoint", "state", "attempts", "next_attempt_at", "last_status", "last_error",
              "delivered_at")
    readonly_fields = fields


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("event_id", "event_type", "customer_id", "created_at")
    list_filter = ("event_type",)
    search_fields = ("=event_id", "=customer_id")
    inlines = [EventDeliveryInline]
    actions = ["replay"]

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("billable.change_eventdelivery"))

    @admin.action(description=_("Replay to every endpoint accepting them"), permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        count = replay_events(queryset)
        self.message_user(request, gettext("Queued %(count)d delivery(ies).") % {"count": count},
                          messages.SUCCESS)


@admin.register(EventDelivery)
class EventDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "event_link", "endpoint", "state", "attempts", "next_attempt_at",
                    "last_status", "delivered_at")
    list_filter = ("state", "endpoint")
    search_fields = ("=event__event_id", "=customer_id")
    list_select_related = ("event", "endpoint")
    actions = ["replay"]

    @admin.display(description=_("Event"))
    def event_link(self, obj: EventDelivery) -> Any:
        return f"{obj.event.event_type} {obj.event.event_id}"

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("billable.change_eventdelivery"))

    @admin.action(description=_("Replay (deliver again from attempt 1)"), permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[EventDelivery]) -> None:
        count = replay_deliveries(queryset)
        self.message_user(request, gettext("Re-armed %(count)d delivery(ies).") % {"count": count},
                          messages.SUCCESS)
