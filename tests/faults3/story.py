"""A customer story driven through the REST API, and the money checks after it.

Each customer buys a 100-credit pack (``POST /orders`` with a retry key, then
``/orders/{id}/confirm`` with the payment id), exchanges the credits for predictions twice
(``POST /exchange`` with retry keys) and spends predictions (``POST /wallet/consume`` with retry
keys). A client repeats a request whose answer it did not get, or got as ``503``, with the same
body and key, as docs/api.md tells it to.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from django.core.management import call_command

from tests.faults3.conftest import API_TOKEN

PROVIDER = "faults3"
PACK = "STARS_PACK_S"  # 100 CREDITS
EXCHANGE = "EXCHANGE_PREDICT_10"  # 50 CREDITS -> 10 PREDICTIONS
RETRYABLE = (httpx.TransportError,)


@dataclass
class Tally:
    """Every answer the clients got, by status, plus the 5xx bodies."""

    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    transport_errors: int = 0
    finals: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)


async def call(client: httpx.AsyncClient, tally: Tally, label: str, path: str,
               body: dict[str, Any], *, deadline: float) -> tuple[int, dict[str, Any]]:
    """POST until an answer other than a transport error or ``503`` arrives."""
    loop = asyncio.get_running_loop()
    while True:
        if loop.time() > deadline:
            raise AssertionError(f"{label}: no final answer before the deadline")
        try:
            response = await client.post(path, json=body, timeout=15)
        except RETRYABLE:
            tally.transport_errors += 1
            await asyncio.sleep(0.1)
            continue
        tally.statuses[response.status_code] += 1
        if response.status_code >= 500:
            if response.status_code != 503:
                tally.server_errors.append(f"{label} {response.status_code} {response.text[:300]}")
            await asyncio.sleep(0.1)
            continue
        data = response.json()
        tally.finals[label] = (response.status_code, data)
        return response.status_code, data


async def customer(client: httpx.AsyncClient, tally: Tally, index: int, consumes: int, *,
                   deadline: float) -> None:
    who = {"provider": PROVIDER, "external_id": f"c{index}"}
    status, order = await call(client, tally, f"order:{index}", "/orders",
                               {**who, "items": [{"sku": PACK, "quantity": 1}],
                                "idempotency_key": f"order-{index}"}, deadline=deadline)
    assert status == 200, (index, order)
    status, body = await call(client, tally, f"confirm:{index}", f"/orders/{order['id']}/confirm",
                              {"payment_id": f"pay-{index}", "payment_method": "faults3"},
                              deadline=deadline)
    assert status == 200, (index, body)
    for round_ in (1, 2):
        status, body = await call(client, tally, f"exchange:{index}:{round_}", "/exchange",
                                  {**who, "sku": EXCHANGE,
                                   "idempotency_key": f"exchange-{index}-{round_}"},
                                  deadline=deadline)
        assert status == 200, (index, round_, body)
    for n in range(consumes):
        status, body = await call(client, tally, f"consume:{index}:{n}", "/wallet/consume",
                                  {**who, "product_key": "PREDICTIONS",
                                   "idempotency_key": f"consume-{index}-{n}",
                                   "metadata": {"n": n}}, deadline=deadline)
        assert status == 200, (index, n, body)


def api_client(port: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1/billing",
                             headers={"Authorization": f"Bearer {API_TOKEN}"})


def check_money(customers: int, consumes: int) -> None:
    """Paid once, granted once, charged once per key; the ledger check passes."""
    from billable.models import ExternalIdentity, Order, QuotaBatch, Transaction
    from billable.services import TransactionService

    for index in range(customers):
        user_id = ExternalIdentity.get_user_by_identity(f"c{index}", provider=PROVIDER).id
        orders = list(Order.objects.filter(user_id=user_id))
        assert [(o.status, o.payment_id) for o in orders] == [("paid", f"pay-{index}")], index
        batches = Counter(b.product.product_key for b in
                          QuotaBatch.objects.filter(user_id=user_id).select_related("product"))
        # one pack, two exchanges: one CREDITS batch, two PREDICTIONS batches
        assert batches == Counter({"CREDITS": 1, "PREDICTIONS": 2}), (index, batches)
        assert TransactionService.get_balance(user_id, "CREDITS") == 0, index
        assert TransactionService.get_balance(user_id, "PREDICTIONS") == 20 - consumes, index
        keys = Counter(t.metadata.get("idempotency_key") for t in Transaction.objects.filter(
            user_id=user_id, action_type="usage", direction="DEBIT"))
        assert keys == Counter({f"consume-{index}-{n}": 1 for n in range(consumes)}), keys
    call_command("billable_check_ledger", verbosity=0)  # raises CommandError on a violation
