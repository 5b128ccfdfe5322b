"""The Prometheus endpoint shows real values after a scripted payment and a consume."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from billable.models import Reservation
from billable.services.api_keys import create_api_key

pytestmark = pytest.mark.django_db(transaction=True)

API = "/api/v1/billing"


def scrape(client: Client, token: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples}


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def post(client: Client, token: str, path: str, payload: dict[str, Any]) -> Any:
    return client.post(API + path, data=payload, content_type="application/json",
                       headers={"Authorization": f"Bearer {token}"})


def test_metrics_after_a_payment_and_a_consume(client: Client, make_product: Any,
                                               make_offer: Any, make_user: Any) -> None:
    credits = make_product("CREDITS")
    make_offer("PACK_10", items=[(credits, 10)], price=Decimal("4.50"), currency="EUR")
    _, shop = create_api_key("shop", ["orders:write", "orders:confirm", "wallet:consume"])
    _, prometheus = create_api_key("prometheus", ["metrics:read"])
    before = scrape(client, prometheus)

    order = post(client, shop, "/orders", {"external_id": "u1",
                                           "items": [{"sku": "PACK_10", "quantity": 2}]}).json()
    paid = post(client, shop, f"/orders/{order['id']}/confirm", {"payment_id": "pay-1",
                                                                  "payment_method": "card"})
    assert paid.status_code == 200
    assert post(client, shop, "/wallet/consume", {"external_id": "u1", "product_key": "credits",
                                                  "amount": 3}).status_code == 200
    assert post(client, shop, "/wallet/consume", {"external_id": "u1", "product_key": "credits",
                                                  "amount": 99}).status_code == 400
    assert post(client, shop, "/orders/1/refund", {}).status_code == 403
    after = scrape(client, prometheus)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("billable_payments_total", outcome="confirmed", currency="EUR",
                 method="card") == 1
    assert delta("billable_payment_amount_total", outcome="confirmed", currency="EUR") == 9.0
    assert delta("billable_consumes_total", product="CREDITS") == 1
    assert delta("billable_consumed_units_total", product="CREDITS") == 3
    requests = "billable_api_requests_total"
    assert delta(requests, method="POST", route="/wallet/consume", status="200") == 1
    assert delta(requests, method="POST", route="/wallet/consume", status="400") == 1
    assert delta(requests, method="POST", route="/orders/{order_id}/confirm", status="200") == 1
    assert delta(requests, method="POST", route="/orders/{order_id}/refund", status="403") == 1
    assert delta("billable_api_request_duration_seconds_count", method="POST",
                 route="/orders") == 1


def test_backlog_gauges_count_overdue_holds(client: Client, make_product: Any,
                                            make_user: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    credits, user = make_product("CREDITS"), make_user()
    expired = timezone.now() - timedelta(seconds=90)
    for _ in range(2):
        Reservation.objects.create(user=user, product=credits, amount=1, expires_at=expired)
    _, token = create_api_key("prometheus", ["metrics:read"])

    samples = scrape(client, token)

    assert value(samples, "billable_backlog_items", backlog="holds_overdue") == 2
    assert 90 <= value(samples, "billable_backlog_oldest_age_seconds",
                       backlog="holds_overdue") < 600


def test_the_endpoint_needs_the_metrics_scope_or_staff(client: Client,
                                                        django_user_model: Any) -> None:
    _, other = create_api_key("shop", ["wallet:read"])
    assert client.get("/metrics").status_code == 401
    refused = client.get("/metrics", headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 403 and refused.json()["data"]["error"] == "insufficient_scope"
    staff = django_user_model.objects.create(username="ops", is_staff=True)
    client.force_login(staff)
    assert client.get("/metrics").status_code == 200
    client.logout()
    with override_settings(BILLABLE_METRICS_PUBLIC=True):
        assert client.get("/metrics").status_code == 200


def open_connections() -> int | None:
    """Connections to the test database (PostgreSQL only)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def test_a_process_without_a_web_server_serves_its_metrics() -> None:
    from urllib.request import urlopen

    from billable.metrics import start_http_server

    before = open_connections()
    server, thread = start_http_server(0)
    try:
        port = server.server_address[1]
        for _ in range(3):  # every scrape runs in a new thread, which opens a connection
            with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                body = response.read().decode()
        assert "# TYPE billable_payments_total counter" in body
        assert 'billable_backlog_items{backlog="refunds"}' in body
        assert 'billable_backlog_items{backlog="events"}' in body
        # ... and closes it when the scrape ends. A closed client's backend leaves
        # pg_stat_activity a moment later (asynchronously), so a busy machine gets a moment.
        deadline = time.monotonic() + 5
        while open_connections() != before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert open_connections() == before
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
