"""Delivery to a loopback receiver: signed, retried with backoff, dead after N attempts,
replayed from the admin's service, in order per customer."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from billable.events import Deliverer, backoff, signing
from billable.models import EventDelivery, OutboxEvent
from billable.services import OrderService, TransactionService
from tests.billable.events.receiver import Receiver, running

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec_test"


class Clock:
    """A movable clock: tests jump past the backoff instead of sleeping."""

    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def pay(user, offer, payment_id: str) -> None:  # type: ignore[no-untyped-def]
    order = OrderService.create_order(user.id, [{"sku": offer.sku}])
    OrderService.process_payment(order.id, payment_id)


def drain(deliverer: Deliverer, clock: Clock, *, rounds: int = 20) -> None:
    for _ in range(rounds):
        deliverer.run_once()
        if not EventDelivery.objects.filter(state="pending").exists():
            return
        clock.advance(3600)


def test_failing_receiver_gets_every_event_signed_and_handles_each_once(
        make_user, make_product, make_offer, make_endpoint):
    with running(Receiver(SECRET, fail_first=5)) as receiver:
        make_endpoint(receiver.url, secret=SECRET)
        tokens = make_product("TOKENS")
        users = [make_user() for _ in range(3)]
        for index, user in enumerate(users):
            pay(user, make_offer(items=[(tokens, 3)], price="2"), f"PAY-{index}")
        clock = Clock()
        drain(Deliverer(clock=clock, base_delay=1, max_delay=60), clock)

    written = set(OutboxEvent.objects.values_list("event_id", flat=True))
    assert len(written) == 6  # payment.confirmed + grant.created per user
    assert {str(e) for e in written} == set(receiver.handled)
    assert len(receiver.handled) == 6 and len(receiver.requests) == 6 + 5
    assert all(r["valid"] and r["header_id"] == r["id"] for r in receiver.requests)
    assert set(EventDelivery.objects.values_list("state", flat=True)) == {"delivered"}
    failed_first = [r["id"] for r in receiver.requests[:5]]
    assert all(failed_first.count(i) + receiver.handled.count(i) >= 2 for i in failed_first)


def test_body_is_the_documented_envelope(user, make_product, make_offer, make_endpoint):
    with running(Receiver(SECRET)) as receiver:
        make_endpoint(receiver.url, secret=SECRET, types=["payment.confirmed"])
        pay(user, make_offer("PACK", items=[(make_product("TOKENS"), 3)], price="2"), "P")
        Deliverer().run_once()
    document = receiver.requests[0]["document"]
    event = OutboxEvent.objects.get()
    assert set(document) == {"id", "type", "created_at", "data"}
    assert document["id"] == str(event.event_id) and document["type"] == "payment.confirmed"
    assert document["data"]["items"] == [{"sku": "PACK", "quantity": 1, "price": "2.00"}]


def test_signature_rejects_tampering_and_old_timestamps():
    body = json.dumps({"id": "x"}).encode()
    header = signing.sign(SECRET, body, timestamp=1_700_000_000)
    assert signing.verify(SECRET, body, header, now=1_700_000_100)
    assert not signing.verify(SECRET, body + b" ", header, now=1_700_000_100)
    assert not signing.verify("other", body, header, now=1_700_000_100)
    assert not signing.verify(SECRET, body, header, now=1_700_000_000 + 301)
    assert not signing.verify(SECRET, body, "garbage")


def test_backoff_doubles_with_jitter_and_is_capped():
    for attempts, full in [(1, 10), (2, 20), (3, 40), (10, 300)]:
        delays = [backoff(attempts, base=10, cap=300) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 1


def test_dead_after_max_attempts_then_replay_delivers(user, make_product, make_offer,
                                                      make_endpoint):
    from billable.events import replay_deliveries

    with running(Receiver(SECRET, fail_first=3)) as receiver:
        make_endpoint(receiver.url, secret=SECRET, types=["payment.confirmed"])
        pay(user, make_offer(items=[(make_product("TOKENS"), 3)], price="2"), "P")
        clock = Clock()
        deliverer = Deliverer(clock=clock, max_attempts=3, base_delay=1)
        drain(deliverer, clock)
        dead = EventDelivery.objects.get()
        assert (dead.state, dead.attempts, dead.last_status) == ("dead", 3, 500)
        assert dead.last_error == "HTTP 500" and receiver.handled == []

        assert replay_deliveries(EventDelivery.objects.filter(state="dead")) == 1
        deliverer.run_once()
    delivered = EventDelivery.objects.get()
    assert (delivered.state, delivered.attempts) == ("delivered", 1)
    assert receiver.handled == [str(delivered.event.event_id)]


def test_unreachable_endpoint_is_retried_later(user, make_product, make_offer, make_endpoint):
    make_endpoint("http://127.0.0.1:9/closed", types=["payment.confirmed"])
    pay(user, make_offer(items=[(make_product("TOKENS"), 3)], price="2"), "P")
    clock = Clock()
    assert Deliverer(clock=clock, timeout=2).run_once() == {"pending": 1}
    row = EventDelivery.objects.get()
    assert row.state == "pending" and row.attempts == 1 and "Error" in row.last_error
    assert row.next_attempt_at > clock.now
    assert Deliverer(clock=clock).run_once() == {}  # backing off: not due


def test_later_event_of_a_customer_waits_for_the_earlier_one(make_user, make_product, make_offer,
                                                             make_endpoint):
    with running(Receiver(SECRET, fail_first=1)) as receiver:
        make_endpoint(receiver.url, secret=SECRET, types=["payment.confirmed"])
        tokens = make_product("TOKENS")
        alice, bob = make_user(), make_user()
        pay(alice, make_offer(items=[(tokens, 1)], price="1"), "A1")
        pay(alice, make_offer(items=[(tokens, 1)], price="1"), "A2")
        pay(bob, make_offer(items=[(tokens, 1)], price="1"), "B1")
        clock = Clock()
        deliverer = Deliverer(clock=clock, base_delay=10)
        deliverer.run_once()  # A1 fails; A2 must wait; B1 goes
        events = {e.payload["payment_id"]: str(e.event_id) for e in OutboxEvent.objects.all()}
        assert receiver.handled == [events["B1"]]
        clock.advance(60)
        deliverer.run_once()
    assert receiver.handled == [events["B1"], events["A1"], events["A2"]]


def test_rolled_back_events_are_never_sent(user, make_product, make_offer, make_endpoint):
    from django.db import transaction

    with running(Receiver(SECRET)) as receiver:
        make_endpoint(receiver.url, secret=SECRET)
        tokens = make_product("TOKENS")
        TransactionService.grant_offer(user.id, make_offer(items=[(tokens, 2)]))
        with pytest.raises(RuntimeError), transaction.atomic():
            pay(user, make_offer(items=[(tokens, 3)], price="2"), "ROLLED-BACK")
            raise RuntimeError
        Deliverer().run_once()
    assert [r["type"] for r in receiver.requests] == ["grant.created"]


def test_command_once_reports_and_the_backlog_gauge_counts(user, make_product, make_offer,
                                                           make_endpoint):
    from io import StringIO

    from billable.metrics.backlogs import event_deliveries

    with running(Receiver(SECRET)) as receiver:
        make_endpoint(receiver.url, secret=SECRET)
        pay(user, make_offer(items=[(make_product("TOKENS"), 3)], price="2"), "P")
        assert event_deliveries().count() == 2
        out = StringIO()
        call_command("billable_deliver_events", stdout=out, stderr=StringIO())
    assert out.getvalue().strip() == "Attempted 2 deliveries (delivered: 2)."
    assert event_deliveries().count() == 0 and len(receiver.handled) == 2


def test_lease_must_outlive_the_timeout(settings):
    from billable.checks import check_event_settings

    assert check_event_settings() == []
    settings.BILLABLE_EVENTS_TIMEOUT = 90
    assert [e.id for e in check_event_settings()] == ["billable.E005"]
