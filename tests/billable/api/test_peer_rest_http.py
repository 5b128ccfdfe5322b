"""Peer suite over real HTTP: the published README's REST flows against running servers.

Two servers, both driven with ``httpx`` over a TCP socket:

* ``live_server`` (pytest-django: Django's threaded WSGI server on 127.0.0.1) with the tests'
  URLconf (``include("billable.urls")``) — on SQLite and PostgreSQL;
* a separate ``uvicorn`` process serving the tests' project through Django's own ASGI
  application (``django.core.asgi.get_asgi_application``, full middleware stack) on a free
  port — PostgreSQL only (a second process cannot see SQLite's in-memory test database).

Every flow of the published 0.2 README must work as written: identify, catalog (with
``?sku=…&sku=…`` and by SKU), order → confirm, exchange, wallet with the bearer header.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import connection

from tests.billable.api.peer_support import build_shop
from tests.helpers import database_url, free_port, stop_process

ROOT = Path(__file__).resolve().parents[3]
BASE = "/api/v1/billing"


def _client(base_url: str, auth: str | None = "default") -> httpx.Client:
    if auth == "default":
        auth = f"Bearer {settings.BILLABLE_API_TOKEN}"
    headers = {"Authorization": auth} if auth else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=20)


def readme_flows(base_url: str) -> None:
    """The README's REST usage, step by step, plus the refusals a client relies on."""
    with _client(base_url) as http:
        # Identify user by external identity (recommended first step)
        who = http.post(f"{BASE}/identify", json={"provider": "telegram",
                                                  "external_id": "5454776146",
                                                  "profile": {"username": "reader"}})
        assert who.status_code == 200, who.text
        user_id = who.json()["user_id"]
        assert who.json()["created_user"] is True

        # Catalog: all active offers, bulk lookup by SKU, one offer by SKU
        everything = http.get(f"{BASE}/catalog")
        assert everything.status_code == 200
        assert "OFF_PREMIUM_PACK" in {offer["sku"] for offer in everything.json()}
        bulk = http.get(f"{BASE}/catalog?sku=off_welcome_trial&sku=off_premium_pack")
        assert [offer["sku"] for offer in bulk.json()] == ["OFF_WELCOME_TRIAL",
                                                            "OFF_PREMIUM_PACK"]
        one = http.get(f"{BASE}/catalog/off_premium_pack")
        assert one.status_code == 200 and one.json()["price"] == "19.90"
        missing = http.get(f"{BASE}/catalog/nope")
        assert missing.status_code == 404
        assert missing.json() == {"success": False, "message": "Offer not found",
                                  "data": missing.json()["data"]}

        # Purchase flow: create order, confirm payment (the payment webhook)
        order = http.post(f"{BASE}/orders", json={
            "user_id": user_id, "items": [{"sku": "off_premium_pack", "quantity": 1}],
            "metadata": {"source": "web_checkout"}})
        assert order.status_code == 200, order.text
        assert order.json()["status"] == "pending" and order.json()["total_amount"] == "19.90"
        order_id = order.json()["id"]
        paid = http.post(f"{BASE}/orders/{order_id}/confirm")  # as written: no body at all
        assert paid.status_code == 200, paid.text
        assert paid.json()["message"] == "Order paid and products activated"
        assert paid.json()["data"]["status"] == "paid"

        # Get balance (headers: Authorization: Bearer <TOKEN>)
        wallet = http.get(f"{BASE}/wallet", params={"user_id": user_id})
        assert wallet.json() == {"user_id": user_id,
                                 "balances": {"TOKENS": 50, "PREMIUM": 1}}

        # Exchange flow (internal currency): buy gems, then spend them
        gems = http.post(f"{BASE}/orders", json={"provider": "telegram",
                                                 "external_id": "5454776146",
                                                 "items": [{"sku": "gem_pack"}]})
        http.post(f"{BASE}/orders/{gems.json()['id']}/confirm", json={"payment_id": "ch_2"})
        exchanged = http.post(f"{BASE}/exchange", json={"user_id": user_id,
                                                        "sku": "tokens_for_gems"})
        assert exchanged.status_code == 200, exchanged.text
        assert exchanged.json()["message"] == "Exchange successful"
        assert exchanged.json()["data"]["metadata"]["price"] == 30

        # Consume (atomic and idempotent), as the README's service example does over REST
        body = {"user_id": user_id, "product_key": "pdf_export"}
        assert http.post(f"{BASE}/wallet/consume", json=body).status_code == 400
        body = {"user_id": user_id, "product_key": "tokens", "idempotency_key": "report_7"}
        first = http.post(f"{BASE}/wallet/consume", json=body)
        again = http.post(f"{BASE}/wallet/consume", json=body)
        assert first.json()["data"]["usage_id"] == again.json()["data"]["usage_id"]
        balances = http.get(f"{BASE}/wallet", params={"user_id": user_id}).json()["balances"]
        assert balances == {"TOKENS": 59, "PREMIUM": 1, "GEMS": 70}

        # Refusals a client sees over the wire
        broken = http.post(f"{BASE}/identify", content=b"{oops",
                           headers={"Content-Type": "application/json"})
        assert broken.status_code == 400 and broken.json()["data"]["error"] == "invalid_json"
        assert http.get(f"{BASE}/orders/abc").status_code == 422
        assert http.get(f"{BASE}/wallet", params={"user_id": 987654321}).status_code == 404
        assert http.get(f"{BASE}/openapi.json").status_code == 200

    with _client(base_url, auth=None) as anonymous:
        refused = anonymous.get(f"{BASE}/wallet", params={"user_id": user_id})
        assert (refused.status_code, refused.json()) == (401, {"detail": "Unauthorized"})
        assert anonymous.get(f"{BASE}/openapi.json").status_code == 401
    with _client(base_url, auth=f"bearer {settings.BILLABLE_API_TOKEN}") as lower:
        assert lower.get(f"{BASE}/products").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_readme_flows_over_http_on_the_live_server(live_server: Any) -> None:
    build_shop()
    readme_flows(live_server.url)


# -- uvicorn in its own process ------------------------------------------------------------------




@pytest.fixture
def uvicorn_server(transactional_db: None) -> Iterator[str]:
    if connection.vendor != "postgresql":
        pytest.skip("a uvicorn process cannot share SQLite's in-memory test database "
                    "(run with DATABASE_URL=postgres://…); the live_server test covers SQLite")
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url(),
           "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory",
         "django.core.asgi:get_asgi_application", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        with _client(base_url) as probe:
            while True:
                if process.poll() is not None:
                    output = process.stdout.read().decode() if process.stdout else ""
                    raise RuntimeError(f"uvicorn exited: {output[-2000:]}")
                try:
                    if probe.get(f"{BASE}/products").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("uvicorn did not start within 30 s")
                time.sleep(0.2)
        yield base_url
    finally:
        stop_process(process)


@pytest.mark.slow
def test_readme_flows_over_http_on_uvicorn(uvicorn_server: str) -> None:
    build_shop()
    readme_flows(uvicorn_server)


@pytest.mark.slow
def test_uvicorn_answers_garbage_with_4xx(uvicorn_server: str) -> None:
    with _client(uvicorn_server) as http:
        for raw in (b"\x00\xff", b"[" * 50_000, b"1" * 5000, b"{\"items\": {}}"):
            answer = http.post(f"{BASE}/orders", content=raw,
                               headers={"Content-Type": "application/json"})
            assert 400 <= answer.status_code < 500, (raw[:10], answer.text[:300])
            assert answer.json()
        for path in ("/orders/-1", "/orders/1e3", "/catalog/%00", f"/orders/{2**64}"):
            answer = http.get(BASE + path)
            assert 400 <= answer.status_code < 500, (path, answer.text[:300])
            assert answer.json()


@pytest.mark.slow
def test_parallel_requests_over_uvicorn_take_effect_once(uvicorn_server: str) -> None:
    """Real concurrency (one uvicorn process, a thread and a connection per request): a brand
    new identity claiming a trial 8 times at once gets one user and one grant; 8 parallel
    confirmations with one payment id grant once; 8 with different ids pay once."""
    from concurrent.futures import ThreadPoolExecutor

    from django.contrib.auth import get_user_model

    build_shop()
    parallel = 8

    def post(path: str, body: dict[str, Any]) -> httpx.Response:
        with _client(uvicorn_server) as http:
            return http.post(BASE + path, json=body)

    with ThreadPoolExecutor(parallel) as pool:
        claims = list(pool.map(lambda _: post("/demo/trial-grant", {
            "provider": "telegram", "external_id": "race-1", "sku": "trial_free"}),
            range(parallel)))
    statuses = sorted(answer.status_code for answer in claims)
    assert statuses == [200] + [400] * (parallel - 1), [a.text for a in claims]
    assert {a.json()["data"]["error"] for a in claims if a.status_code == 400} == {
        "trial_already_used"}
    assert get_user_model().objects.filter(username="billable_telegram_race-1").count() == 1

    user_id = post("/identify", {"provider": "telegram", "external_id": "race-1"}).json()[
        "user_id"]
    order = post("/orders", {"user_id": user_id, "items": [{"sku": "pack_10"}]}).json()
    with ThreadPoolExecutor(parallel) as pool:
        same = list(pool.map(lambda _: post(f"/orders/{order['id']}/confirm",
                                            {"payment_id": "same-charge"}), range(parallel)))
    assert [answer.status_code for answer in same] == [200] * parallel, [a.text for a in same]

    other = post("/orders", {"user_id": user_id, "items": [{"sku": "pack_10"}]}).json()
    with ThreadPoolExecutor(parallel) as pool:
        rival = list(pool.map(lambda n: post(f"/orders/{other['id']}/confirm",
                                             {"payment_id": f"charge-{n}"}), range(parallel)))
    assert sorted(answer.status_code for answer in rival) == [200] + [409] * (parallel - 1)

    with _client(uvicorn_server) as http:
        wallet = http.get(f"{BASE}/wallet", params={"user_id": user_id}).json()
    assert wallet["balances"] == {"TOKENS": 5 + 10 + 10}


@pytest.mark.slow
def test_parallel_consumes_over_uvicorn_never_overdraw(uvicorn_server: str) -> None:
    """16 parallel consumes of 1 against 10 units: 10 succeed, 6 are refused, nothing goes
    below zero; 8 parallel consumes with one idempotency key spend once."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.billable.api.peer_support import give, new_user

    shop = build_shop()
    spender, keyed = new_user("spender"), new_user("keyed")
    give(spender, shop.pack)
    give(keyed, shop.pack)

    def consume(body: dict[str, Any]) -> httpx.Response:
        with _client(uvicorn_server) as http:
            return http.post(f"{BASE}/wallet/consume", json=body)

    with ThreadPoolExecutor(16) as pool:
        drained = list(pool.map(lambda _: consume({"user_id": spender.pk,
                                                   "product_key": "tokens"}), range(16)))
        replayed = list(pool.map(lambda _: consume({"user_id": keyed.pk, "product_key": "tokens",
                                                    "idempotency_key": "once"}), range(8)))
    assert sorted(a.status_code for a in drained) == [200] * 10 + [400] * 6, [
        a.text for a in drained if a.status_code not in (200, 400)]
    assert {a.json()["data"]["error"] for a in drained if a.status_code == 400} <= {
        "quota_exhausted", "insufficient_funds"}
    assert [a.status_code for a in replayed] == [200] * 8, [a.text for a in replayed]
    assert len({a.json()["data"]["usage_id"] for a in replayed}) == 1
    with _client(uvicorn_server) as http:
        assert http.get(f"{BASE}/wallet", params={"user_id": spender.pk}).json()[
            "balances"] == {}
        assert http.get(f"{BASE}/wallet", params={"user_id": keyed.pk}).json()[
            "balances"] == {"TOKENS": 9}
