"""A host with ``ATOMIC_REQUESTS = True``: the API's views run outside a request transaction.

Django refuses to wrap an async view in ``atomic`` (``RuntimeError``), so without the mark every
async endpoint answered 500 under that common setting; the sync ones would hold their locks for
the whole request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.test import AsyncClient, Client, override_settings

from billable.models import QuotaBatch
from billable.services import TransactionService

pytestmark = pytest.mark.django_db(transaction=True)

MOUNT = "/api/v1/billing"


@pytest.fixture
def atomic_requests(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for alias in connections.settings:
        monkeypatch.setitem(connections.settings[alias], "ATOMIC_REQUESTS", True)
    yield


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.BILLABLE_API_TOKEN}"}


@pytest.mark.parametrize("urlconf", ["tests.urls", "tests.examples.urls_api_mount"])
def test_every_endpoint_answers_and_commits_under_atomic_requests(
        atomic_requests: None, urlconf: str, make_offer: Any, make_product: Any) -> None:
    tokens = make_product("TOKENS")
    make_offer("PACK_5", items=[(tokens, 5)])
    with override_settings(ROOT_URLCONF=urlconf):
        client = Client(headers=bearer())
        identified = client.post(f"{MOUNT}/identify", {"external_id": "42"},
                                 content_type="application/json")
        assert identified.status_code == 200, identified.content
        user_id = identified.json()["user_id"]
        TransactionService.grant_offer(user_id, offer="PACK_5")

        consumed = client.post(f"{MOUNT}/wallet/consume",
                               {"user_id": user_id, "product_key": "tokens",
                                "action_type": "usage", "idempotency_key": "k1"},
                               content_type="application/json")
        assert consumed.status_code == 200, consumed.content
        assert client.get(f"{MOUNT}/health").status_code == 200
        wallet = client.get(f"{MOUNT}/wallet", {"user_id": user_id})
        assert wallet.json()["balances"] == {"TOKENS": 4}

    assert QuotaBatch.objects.get(user_id=user_id).remaining_quantity == 4


async def test_async_client_under_atomic_requests(atomic_requests: None) -> None:
    client = AsyncClient()
    identified = await client.post(f"{MOUNT}/identify", {"external_id": "7"},
                                   content_type="application/json", headers=bearer())
    assert identified.status_code == 200, identified.content
    assert (await client.get(f"{MOUNT}/health")).status_code == 200
