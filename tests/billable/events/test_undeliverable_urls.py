"""An endpoint saved without validation with a URL that cannot take a POST: nothing is sent,
the delivery is dead at once with the reason recorded, and a fixed URL plus a replay delivers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from billable.events import Deliverer, replay_deliveries
from billable.events.delivery import post
from billable.events.urls import url_problem
from billable.models import EventDelivery, EventEndpoint
from billable.services import OrderService
from tests.billable.events.receiver import Receiver, running

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec_test"
UNDELIVERABLE = [
    "ftp://127.0.0.1:{port}/hooks/billable",
    "javascript:alert(1)",
    "127.0.0.1:{port}/hooks/billable",
    "//127.0.0.1:{port}/hooks/billable",
    "http:///hooks/billable",
    "http://127.0.0.1:notaport/hooks",
    "http://127.0.0.1:{port}/hooks billable",
    "file:///etc/passwd",
]


@pytest.fixture
def paid(make_user: Callable[..., Any], make_product: Callable[..., Any],
         make_offer: Callable[..., Any]) -> Callable[[], None]:
    def build() -> None:
        offer = make_offer(items=[(make_product("TOKENS"), 3)], price="2")
        order = OrderService.create_order(make_user().id, [{"sku": offer.sku}])
        OrderService.process_payment(order.id, f"PAY-{order.id}")

    return build


@pytest.mark.parametrize("template", UNDELIVERABLE)
def test_undeliverable_url_is_dead_at_once_and_nothing_reaches_the_host(
        template: str, paid: Callable[[], None]) -> None:
    with running(Receiver(SECRET)) as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        EventEndpoint.objects.create(url=template.format(port=port), secret=SECRET,
                                     event_types=["payment.confirmed"])
        paid()
        assert Deliverer(max_attempts=12).run_once() == {"dead": 1}
        assert Deliverer().run_once() == {}  # nothing left to retry
    assert receiver.requests == []
    row = EventDelivery.objects.get()
    assert (row.state, row.attempts, row.last_status) == ("dead", 1, None)
    assert row.last_error.startswith("Undeliverable URL: ")


@pytest.mark.parametrize("url", ["ftp://example.com/x", "javascript:alert(1)", "example.com/x"])
def test_the_transport_is_never_called_for_an_undeliverable_url(
        url: str, paid: Callable[[], None]) -> None:
    calls: list[str] = []

    def send(url: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(url)
        raise AssertionError("sent")

    EventEndpoint.objects.create(url=url, event_types=["payment.confirmed"])
    paid()
    assert Deliverer(send=send).run_once() == {"dead": 1}
    assert calls == []
    assert "scheme" in EventDelivery.objects.get().last_error


def test_fixed_url_and_replay_delivers(paid: Callable[[], None]) -> None:
    with running(Receiver(SECRET)) as receiver:
        endpoint = EventEndpoint.objects.create(url=receiver.url.replace("http:", "ftp:"),
                                                secret=SECRET, event_types=["payment.confirmed"])
        paid()
        assert Deliverer().run_once() == {"dead": 1}
        endpoint.url = receiver.url
        endpoint.save()
        assert replay_deliveries(EventDelivery.objects.filter(state="dead")) == 1
        assert Deliverer().run_once() == {"delivered": 1}
    assert len(receiver.handled) == 1 and receiver.requests[0]["valid"]


def test_post_refuses_an_undeliverable_url_without_connecting() -> None:
    response = post("ftp://127.0.0.1:9/x", b"{}", {}, timeout=1)
    assert response.status is None and response.error.startswith("Undeliverable URL: scheme")
    assert url_problem("https://n8n.example.com/webhook/x") == ""
    assert url_problem("HTTP://example.com/x") == ""  # the scheme is case-insensitive
