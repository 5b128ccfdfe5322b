"""The outbound-event admin: endpoints (form, test ping), events and deliveries (view only,
replay)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from billable.events.outbox import subscribed_types
from billable.models import EventDelivery, EventEndpoint, OutboxEvent
from billable.services import OrderService

pytestmark = pytest.mark.django_db


@pytest.fixture
def paid(user, make_product, make_offer):
    subscribed_types.clear()
    endpoint = EventEndpoint.objects.create(url="http://127.0.0.1:9/hook",
                                            event_types=["payment.confirmed"])
    order = OrderService.create_order(user.id, [{"sku": make_offer(
        "PACK", items=[(make_product("TOKENS"), 2)], price="1").sku}])
    OrderService.process_payment(order.id, "PAY")
    yield endpoint
    subscribed_types.clear()


def test_pages_render_and_history_is_view_only(admin_client, paid):
    event, delivery = OutboxEvent.objects.get(), EventDelivery.objects.get()
    for name, pk in [("eventendpoint", paid.pk), ("outboxevent", event.pk),
                     ("eventdelivery", delivery.pk)]:
        assert admin_client.get(reverse(f"admin:billable_{name}_changelist")).status_code == 200
        assert admin_client.get(reverse(f"admin:billable_{name}_change",
                                        args=[pk])).status_code == 200
    for query in ("?q=not-a-uuid", f"?q={event.event_id}", "?state__exact=dead"):
        assert admin_client.get(reverse("admin:billable_eventdelivery_changelist")
                                + query).status_code == 200
    assert admin_client.get(reverse("admin:billable_outboxevent_changelist")
                            + "?q=nope").status_code == 200
    assert admin_client.get(reverse("admin:billable_eventendpoint_add")).status_code == 200
    for name in ("outboxevent", "eventdelivery"):
        assert admin_client.get(reverse(f"admin:billable_{name}_add")).status_code == 403


def test_adding_an_endpoint_with_a_type_filter(admin_client):
    response = admin_client.post(reverse("admin:billable_eventendpoint_add"), {
        "name": "n8n", "url": "https://n8n.example.com/webhook/billable-events",
        "event_types": ["payment.confirmed", "quota.low"], "secret": "whsec_x",
        "is_active": "on"})
    assert response.status_code == 302, response.content[:2000]
    endpoint = EventEndpoint.objects.get()
    assert endpoint.event_types == ["payment.confirmed", "quota.low"]
    assert endpoint.accepts("quota.low") and not endpoint.accepts("grant.created")


def test_replay_actions_and_test_ping(admin_client, paid):
    EventDelivery.objects.update(state="dead", attempts=12, last_error="HTTP 500")
    delivery = EventDelivery.objects.get()
    response = admin_client.post(reverse("admin:billable_eventdelivery_changelist"), {
        "action": "replay", "_selected_action": [delivery.pk]})
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("pending", 0, "")

    other = EventEndpoint.objects.create(url="http://127.0.0.1:9/other")  # every type
    admin_client.post(reverse("admin:billable_outboxevent_changelist"), {
        "action": "replay", "_selected_action": [OutboxEvent.objects.get().pk]})
    assert set(EventDelivery.objects.values_list("endpoint_id", "state")) == {
        (paid.pk, "pending"), (other.pk, "pending")}

    admin_client.post(reverse("admin:billable_eventendpoint_changelist"), {
        "action": "send_test", "_selected_action": [other.pk]})
    ping = OutboxEvent.objects.get(event_type="ping")
    assert list(ping.deliveries.values_list("endpoint_id", flat=True)) == [other.pk]
