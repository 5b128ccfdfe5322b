"""Peer acceptance suite (black box) for outbound events, written from docs/events.md only.

The outbox is written in the change's transaction (nothing for a rolled-back change), each
POST is signed as documented, failures back off and end *dead*, a replay re-arms, and a
customer's later event waits for the earlier one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from billable.events import sign, verify
from billable.models import EventDelivery, EventEndpoint, OutboxEvent
from billable.services import OrderService
from tests.billable.events.receiver import Receiver, running

pytestmark = pytest.mark.django_db


class Recorder(Receiver):
    """The loopback receiver, also keeping every request's raw body and headers; answers
    ``statuses`` in turn (then 200)."""

    def __init__(self, secret: str, statuses: list[int] | None = None) -> None:
        super().__init__(secret)
        self.statuses = list(statuses or [])
        self.raw: list[tuple[bytes, dict[str, str]]] = []

    def answer(self, body: bytes, headers: Any) -> int:
        self.raw.append((body, dict(headers.items())))
        status = super().answer(body, headers)
        if status == 200 and self.statuses:
            return self.statuses.pop(0)
        return status


@pytest.fixture
def paid_order(make_user: Callable[..., Any], make_product: Callable[..., Any],
               make_offer: Callable[..., Any]) -> Callable[..., Any]:
    """Builder: ``paid_order(user=None)`` → an order of PACK (10 credits, 9.99 USD), paid."""
    credits = make_product("CREDITS")
    make_offer("PACK", items=[(credits, 10)], price="9.99")
    counter = iter(range(1, 1000))

    def build(user: Any = None) -> Any:
        buyer = user or make_user()
        order = OrderService.create_order(buyer.pk, [{"sku": "PACK", "quantity": 1}])
        OrderService.process_payment(order.id, payment_id=f"ev-{next(counter)}",
                                     payment_method="card")
        return order

    return build


def deliver(**options: Any) -> str:
    out = StringIO()
    call_command("billable_deliver_events", stdout=out, **options)
    return out.getvalue()


def make_due() -> None:
    EventDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))


# --- the outbox ----------------------------------------------------------------------------------


def test_event_is_written_with_the_change(make_endpoint: Callable[..., Any],
                                          paid_order: Callable[..., Any]) -> None:
    endpoint = make_endpoint(types=["payment.confirmed"])
    order = paid_order()
    event = OutboxEvent.objects.get()
    assert event.event_type == "payment.confirmed"
    assert event.payload["order_id"] == order.id if "order_id" in event.payload else True
    delivery = EventDelivery.objects.get()
    assert (delivery.endpoint_id, delivery.state, delivery.attempts) == (endpoint.pk,
                                                                         "pending", 0)


def test_replayed_confirmation_writes_no_second_event(make_endpoint: Callable[..., Any],
                                                      paid_order: Callable[..., Any]) -> None:
    make_endpoint(types=["payment.confirmed"])
    order = paid_order()
    OrderService.process_payment(order.id, payment_id=order.payment_id or "ev-1",
                                 payment_method="card")
    assert OutboxEvent.objects.filter(event_type="payment.confirmed").count() == 1


def test_delivery_is_signed_as_documented(make_endpoint: Callable[..., Any],
                                          paid_order: Callable[..., Any]) -> None:
    with running(Recorder("whsec_peer")) as receiver:
        make_endpoint(receiver.url, types=["payment.confirmed"], secret="whsec_peer")
        order = paid_order()
        assert "delivered: 1" in deliver()
    [(body, headers)] = receiver.raw
    document = json.loads(body)
    event = OutboxEvent.objects.get()
    assert document["id"] == str(event.event_id) == headers["Billable-Event-Id"]
    assert document["type"] == "payment.confirmed" == headers["Billable-Event-Type"]
    assert headers["Content-Type"].startswith("application/json")
    assert headers["User-Agent"].startswith("billable-events/")
    data = document["data"]
    assert data["order_id"] == order.id and data["total_amount"] == "9.99"
    assert data["status"] == "paid" and data["items"][0]["sku"] == "PACK"
    assert document["created_at"].endswith("Z") or "+00:00" in document["created_at"]
    fields = dict(part.split("=", 1) for part in headers["Billable-Signature"].split(","))
    assert abs(int(fields["t"]) - time.time()) < 60
    expected = hmac.new(b"whsec_peer", fields["t"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    assert verify("whsec_peer", body, headers["Billable-Signature"])
    delivery = EventDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 1, 200)


@pytest.mark.parametrize("header", [
    "", "garbage", "t=abc,v1=00", "v1=00", "t=99999999999999999999999,v1=00", "t=1.5,v1=00",
    "t=\x00,v1=\x00", ",,,=,=",
])
def test_verify_refuses_a_garbled_header_without_raising(header: str) -> None:
    body = b'{"id":"e1"}'
    assert verify("s", body, header) is False


def test_verify_refuses_an_old_or_future_timestamp() -> None:
    body = b"{}"
    assert verify("s", body, sign("s", body))
    assert not verify("s", body, sign("s", body, timestamp=int(time.time()) - 301))
    assert not verify("s", body, sign("s", body, timestamp=int(time.time()) + 301))


# --- retries, dead letter, replay ------------------------------------------------------------


@override_settings(BILLABLE_EVENTS_RETRY_BASE=10.0, BILLABLE_EVENTS_RETRY_MAX=3600.0)
@pytest.mark.parametrize("status", [500, 302])
def test_non_2xx_answer_is_a_failed_attempt_retried_with_backoff(
        make_endpoint: Callable[..., Any], paid_order: Callable[..., Any], status: int) -> None:
    with running(Recorder("s", statuses=[status])) as receiver:
        make_endpoint(receiver.url, types=["payment.confirmed"], secret="s")
        paid_order()
        started = timezone.now()
        deliver()
        delivery = EventDelivery.objects.get()
        assert (delivery.state, delivery.attempts) == ("pending", 1)
        assert delivery.last_status == status
        wait = (delivery.next_attempt_at - started).total_seconds()
        assert 5 - 1 <= wait <= 10 + 5, wait   # equal jitter: the upper half of 10 s
        assert "Attempted 0" in deliver()      # not due yet
        make_due()
        deliver()
    assert EventDelivery.objects.get().state == "delivered"
    assert len(receiver.raw) == 2
    first, second = (json.loads(body)["id"] for body, _ in receiver.raw)
    assert first == second


def test_refused_connection_is_a_failed_attempt(make_endpoint: Callable[..., Any],
                                                paid_order: Callable[..., Any]) -> None:
    make_endpoint("http://127.0.0.1:9/nothing-listens", types=["payment.confirmed"])
    paid_order()
    deliver()
    delivery = EventDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 1, None)
    assert delivery.last_error


def test_later_event_of_a_customer_waits_for_the_earlier_one(
        make_endpoint: Callable[..., Any], paid_order: Callable[..., Any], user: Any,
        make_user: Callable[..., Any]) -> None:
    with running(Recorder("s", statuses=[500])) as receiver:
        make_endpoint(receiver.url, types=["payment.confirmed"], secret="s")
        paid_order(user)
        paid_order(user)
        paid_order(make_user())     # another customer is not held back
        deliver()
        order_ids = [json.loads(body)["data"]["order_id"] for body, _ in receiver.raw]
        assert len(order_ids) == 2, order_ids
        make_due()
        deliver()
        deliver()
    user_orders = [json.loads(body)["data"]["order_id"] for body, _ in receiver.raw
                   if json.loads(body)["data"]["user_id"] == user.pk]
    assert user_orders[0] == user_orders[1] and user_orders[1] < user_orders[2]
    assert set(EventDelivery.objects.values_list("state", flat=True)) == {"delivered"}


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize("fields", [
    {"url": "ftp://example.com/hook"}, {"url": "javascript:alert(1)"}, {"url": "not a url"},
    {"url": "https://example.com/\x00"},
    {"event_types": ["payment.confirm"]}, {"event_types": "payment.confirmed"},
    {"event_types": [1]}, {"event_types": {"a": 1}},
    {"secret": ""},
])
def test_invalid_endpoint_configuration_is_refused_by_validation(fields: dict[str, Any]) -> None:
    endpoint = EventEndpoint(**{"name": "bad", "url": "https://example.com/hook",
                                "event_types": ["payment.confirmed"], **fields})
    with pytest.raises(ValidationError):
        endpoint.full_clean()


def test_valid_endpoint_passes_validation() -> None:
    endpoint = EventEndpoint(name="ok", url="https://n8n.example.com/webhook/x",
                             event_types=["payment.confirmed", "ping"])
    endpoint.full_clean()
    assert endpoint.secret.startswith("whsec_")
    assert EventEndpoint(url="http://127.0.0.1:8000/h").accepts("quota.low")


@pytest.mark.parametrize("options", [{"limit": 0}, {"interval": 0},
                                     {"lease": 5, "timeout": 10}, {"lease": -1}])
def test_worker_options_that_break_the_rules_stop_it(options: dict[str, Any]) -> None:
    with pytest.raises(CommandError):
        deliver(**options)


def test_inactive_endpoint_keeps_its_deliveries_until_it_is_active_again(
        make_endpoint: Callable[..., Any], paid_order: Callable[..., Any]) -> None:
    with running(Recorder("s")) as receiver:
        endpoint = make_endpoint(receiver.url, types=["payment.confirmed"], secret="s")
        paid_order()
        endpoint.is_active = False
        endpoint.save()
        assert "Attempted 0" in deliver()
        paid_order()    # no new delivery for an inactive endpoint
        assert EventDelivery.objects.count() == 1
        endpoint.is_active = True
        endpoint.save()
        deliver()
    assert len(receiver.raw) == 1
    assert EventDelivery.objects.get().state == "delivered"


def test_replay_events_reaches_an_endpoint_created_after_the_event(
        make_endpoint: Callable[..., Any], paid_order: Callable[..., Any]) -> None:
    from billable.events import replay_events

    make_endpoint(types=["payment.confirmed"])
    paid_order()
    with running(Recorder("late")) as receiver:
        make_endpoint(receiver.url, types=["payment.confirmed"], secret="late")
        replay_events(OutboxEvent.objects.all())
        assert EventDelivery.objects.count() == 2
        EventDelivery.objects.filter(endpoint__secret="late").update(
            next_attempt_at=timezone.now() - timedelta(seconds=1))
        deliver()
    assert len(receiver.handled) == 1
    assert receiver.handled[0] == str(OutboxEvent.objects.get().event_id)


@override_settings(BILLABLE_EVENTS_MAX_ATTEMPTS=1)
def test_dead_delivery_stops_holding_back_the_customers_later_events(
        make_endpoint: Callable[..., Any], paid_order: Callable[..., Any], user: Any) -> None:
    with running(Recorder("s", statuses=[500])) as receiver:
        make_endpoint(receiver.url, types=["payment.confirmed"], secret="s")
        first, second = paid_order(user), paid_order(user)
        deliver()
        deliver()
    states = dict(EventDelivery.objects.values_list("event__payload__order_id", "state"))
    assert states == {first.id: "dead", second.id: "delivered"}
    assert EventDelivery.objects.get(state="dead").last_status == 500
