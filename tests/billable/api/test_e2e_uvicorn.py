"""End-to-end: the demo project under uvicorn (ASGI) on PostgreSQL, driven over real HTTP.

The server process uses the same PostgreSQL test database as this test (pytest-django created
and migrated it; ``transaction=True`` commits the fixtures so the server sees them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import database_url, free_port, requires_postgres, stop_process

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "e2e-token-0123456789abcdef"
BASE = "/api/v1/billing"

pytestmark = [requires_postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]




def _wait_until_up(client: httpx.Client, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited: {process.stdout.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if client.get(f"{BASE}/products").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("uvicorn did not start within 30 s")


@pytest.fixture
def server() -> Iterator[httpx.Client]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url(), "BILLABLE_API_TOKEN": TOKEN,
           "DJANGO_SETTINGS_MODULE": "examples.demo_project.settings", "DJANGO_DEBUG": "0",
           "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.demo_project.asgi:application",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers,
                          timeout=10) as client:
            _wait_until_up(client, process)
            yield client
    finally:
        stop_process(process)


def _post(client: httpx.Client, path: str, payload: dict[str, Any]) -> Any:
    response = client.post(BASE + path, json=payload)
    assert response.status_code == 200, response.text
    return response.json()


def test_identify_order_confirm_consume_wallet_over_http(server: httpx.Client,
                                                         make_product: Any,
                                                         make_offer: Any) -> None:
    tokens = make_product("TOKENS", name="AI Tokens")
    make_offer("PACK_10", items=[(tokens, 10)], price=Decimal("4.99"))

    assert server.get(f"{BASE}/products", headers={"Authorization": "Bearer nope"}
                      ).status_code == 401
    user_id = _post(server, "/identify", {"provider": "telegram", "external_id": "555"})[
        "user_id"]
    order = _post(server, "/orders", {"provider": "telegram", "external_id": "555",
                                      "items": [{"sku": "pack_10", "quantity": 2}]})
    assert order["user_id"] == user_id and order["total_amount"] == "9.98"
    confirmed = _post(server, f"/orders/{order['id']}/confirm", {"payment_id": "e2e-1"})
    assert confirmed["data"]["status"] == "paid"
    consumed = _post(server, "/wallet/consume", {"user_id": user_id, "product_key": "tokens",
                                                  "amount": 3, "idempotency_key": "job-1"})
    assert consumed["data"]["remaining"] == 17
    wallet = server.get(f"{BASE}/wallet", params={"provider": "telegram", "external_id": "555"})
    assert wallet.json() == {"user_id": user_id, "balances": {"TOKENS": 17}}
    ledger = server.get(f"{BASE}/wallet/transactions", params={"user_id": user_id}).json()
    assert [(row["direction"], row["amount"]) for row in ledger] == [("DEBIT", 3),
                                                                      ("CREDIT", 20)]
    missing = server.post(f"{BASE}/orders/999999/confirm", json={})
    assert missing.status_code == 404 and missing.json()["message"] == "Order not found"
