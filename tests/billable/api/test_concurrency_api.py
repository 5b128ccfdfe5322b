"""Concurrent HTTP requests against PostgreSQL: retries and races never double-spend or grant."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.helpers import requires_postgres, run_in_threads

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]

URL = "/api/v1/billing"
THREADS = 8


def _auth(settings: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.BILLABLE_API_TOKEN}"}


def test_parallel_consume_with_one_key_spends_once(settings: Any, user: Any, tokens: Any,
                                                   grant: Any, make_offer: Any) -> None:
    grant(user, make_offer("TEN", items=[(tokens, 10)]))
    payload = {"user_id": user.pk, "product_key": "TOKENS", "amount": 3,
               "idempotency_key": "job-42"}

    def call(_: int) -> Any:
        return Client().post(f"{URL}/wallet/consume", payload, content_type="application/json",
                             headers=_auth(settings))

    replies = run_in_threads(THREADS, call)
    assert [r.status_code for r in replies] == [200] * THREADS
    assert len({r.json()["data"]["usage_id"] for r in replies}) == 1
    wallet = Client().get(f"{URL}/wallet", {"user_id": user.pk}, headers=_auth(settings))
    assert wallet.json()["balances"] == {"TOKENS": 7}


def test_parallel_confirms_grant_once(settings: Any, user: Any, tokens: Any,
                                      make_offer: Any) -> None:
    make_offer("PACK", items=[(tokens, 5)], price="1.00")
    client = Client()
    order = client.post(f"{URL}/orders", {"user_id": user.pk, "items": [{"sku": "PACK",
                                                                         "quantity": 1}]},
                        content_type="application/json", headers=_auth(settings)).json()

    def confirm(index: int) -> Any:
        return Client().post(f"{URL}/orders/{order['id']}/confirm",
                             {"payment_id": "pay-1" if index % 2 else "pay-2"},
                             content_type="application/json", headers=_auth(settings))

    statuses = sorted(r.status_code for r in run_in_threads(THREADS, confirm))
    assert set(statuses) <= {200, 409} and statuses.count(200) >= 1
    wallet = client.get(f"{URL}/wallet", {"user_id": user.pk}, headers=_auth(settings))
    assert wallet.json()["balances"] == {"TOKENS": 5}


def test_parallel_order_creations_with_one_key_create_one_order(settings: Any, user: Any,
                                                               tokens: Any,
                                                               make_offer: Any) -> None:
    from billable.models import Order

    make_offer("PACK", items=[(tokens, 5)], price="1.00")
    payload = {"user_id": user.pk, "items": [{"sku": "PACK", "quantity": 2}],
               "idempotency_key": "checkout-7"}

    def create(_: int) -> Any:
        return Client().post(f"{URL}/orders", payload, content_type="application/json",
                             headers=_auth(settings))

    replies = run_in_threads(THREADS, create)
    assert [r.status_code for r in replies] == [200] * THREADS
    assert len({r.json()["id"] for r in replies}) == 1
    assert Order.objects.filter(user=user).count() == 1
