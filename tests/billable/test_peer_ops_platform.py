"""Peer acceptance suite: operations (SPEC §10) and the system checks (SPEC §2).

From the contract and the user docs only (docs/operations.md, docs/events.md,
docs/api-keys.md, docs/metrics.md, docs/upgrading.md, docs/reference.md "System checks",
docs/delivery.md "Readiness").
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.core.management import call_command
from django.db import transaction
from django.test import Client, override_settings

from billable.models import EventEndpoint, OutboxEvent
from billable.services import OrderService, TransactionService

REPO = Path(__file__).resolve().parents[2]


# --- system checks (SPEC §2) -----------------------------------------------------------------


def billable_ids(**settings: Any) -> set[str]:
    with override_settings(**settings):
        return {problem.id for problem in checks.run_checks()
                if (problem.id or "").startswith("billable.")}


def test_a_sound_configuration_has_no_billable_check() -> None:
    assert billable_ids() == set()


@pytest.mark.parametrize(("settings", "expected"), [
    ({"BILLABLE_API_TOKEN": None}, "billable.W001"),
    ({"BILLABLE_API_TOKEN": ""}, "billable.W001"),
    ({"BILLABLE_API_TOKEN": 12345}, "billable.E001"),
    ({"BILLABLE_API_TOKEN": "changeme", "DEBUG": False}, "billable.W002"),
    ({"BILLABLE_API_TOKEN": "short", "DEBUG": False}, "billable.W002"),
    ({"BILLABLE_CONSUMPTION_ORDER": "random"}, "billable.E002"),
    ({"BILLABLE_CURRENCY": ""}, "billable.E003"),
    ({"BILLABLE_CURRENCY": 840}, "billable.E003"),
    ({"BILLABLE_USER_MODEL": "crm.Customer"}, "billable.W003"),
    ({"BILLABLE_RESERVATION_TTL": -1}, "billable.E004"),
    ({"BILLABLE_EVENTS_TIMEOUT": 60.0, "BILLABLE_EVENTS_LEASE": 30.0}, "billable.E005"),
])
def test_misconfiguration_is_a_system_check(settings: dict[str, Any], expected: str) -> None:
    assert expected in billable_ids(**settings)


def test_billable_user_model_equal_to_auth_user_model_is_fine() -> None:
    assert "billable.W003" not in billable_ids(BILLABLE_USER_MODEL="auth.User")


def test_manage_py_check_reports_an_unset_token_in_production(tmp_path: Path) -> None:
    settings = tmp_path / "peer_settings.py"
    settings.write_text("from tests.settings import *\nBILLABLE_API_TOKEN = None\nDEBUG = False\n")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "peer_settings", "DATABASE_URL": "",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run([sys.executable, "-m", "django", "check", "--deploy"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert "billable.W001" in done.stdout + done.stderr


# --- readiness and metrics -------------------------------------------------------------------


@pytest.mark.django_db
def test_readiness_needs_no_token_and_tells_no_business_data(client: Client) -> None:
    response = client.get("/api/v1/billing/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert "BILLABLE" not in json.dumps(body).upper()


@pytest.mark.django_db(transaction=True)
def test_readiness_inside_a_transaction_keeps_the_callers_work(
        make_product: Callable[..., Any]) -> None:
    from billable.health import readiness
    from billable.models import Product

    with transaction.atomic():
        make_product("PEER_HEALTH")
        ready, body = readiness()
        assert ready and body["checks"]["database"] == "ok"
        assert Product.objects.filter(product_key="PEER_HEALTH").exists()
    assert Product.objects.filter(product_key="PEER_HEALTH").exists()


@pytest.mark.django_db
def test_metrics_are_guarded_like_the_api(client: Client, django_user_model: Any) -> None:
    from billable.services.api_keys import create_api_key

    _, reader = create_api_key("prometheus", ["metrics:read"])
    _, other = create_api_key("shop", ["catalog:read"])
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {other}"}).status_code \
        == 403
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {reader}"})
    assert scraped.status_code == 200
    assert b"billable_payments_total" in b"".join(scraped) if scraped.streaming \
        else b"billable_payments_total" in scraped.content
    with override_settings(BILLABLE_METRICS_PUBLIC=True):
        assert client.get("/metrics").status_code == 200


# --- structured logs -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_payment_logs_its_ids_as_fields(user: Any, make_product: Callable[..., Any],
                                          make_offer: Callable[..., Any],
                                          caplog: pytest.LogCaptureFixture) -> None:
    make_offer("PEER_LOG_PACK", items=[(make_product("PEER_LOG"), 5)], price="3")
    order = OrderService.create_order(user.pk, [{"sku": "PEER_LOG_PACK", "quantity": 1}])

    with caplog.at_level(logging.INFO, logger="billable.events"):
        OrderService.process_payment(order.pk, payment_id="ch-peer-1", payment_method="peer")

    [record] = [r for r in caplog.records if r.name == "billable.events"
                and getattr(r, "order_id", None) == order.pk]
    assert (record.customer_id, record.charge_id) == (user.pk, "ch-peer-1")
    from billable.logs import JsonFormatter
    line = json.loads(JsonFormatter().format(record))
    assert (line["order_id"], line["customer_id"], line["charge_id"]) == \
        (order.pk, user.pk, "ch-peer-1")


# --- outbound events -------------------------------------------------------------------------


class Hook:
    """A loopback receiver: 500 for the first ``fail_first`` requests, then 200."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.seen: list[tuple[dict[str, str], bytes]] = []


@contextmanager
def receiver(fail_first: int = 0) -> Iterator[tuple[Hook, str]]:
    hook = Hook(fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.seen.append((dict(self.headers.items()), body))
            failing = len(hook.seen) <= hook.fail_first
            self.send_response(500 if failing else 204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook, f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.django_db
@override_settings(BILLABLE_EVENTS_RETRY_BASE=0.001, BILLABLE_EVENTS_RETRY_MAX=0.001)
def test_events_are_signed_retried_and_keep_their_id(
        user: Any, make_product: Callable[..., Any], make_offer: Callable[..., Any]) -> None:
    from billable.events import verify

    make_offer("PEER_EV_PACK", items=[(make_product("PEER_EV"), 5)], price="3")
    with receiver(fail_first=1) as (hook, url):
        endpoint = EventEndpoint.objects.create(name="peer", url=url,
                                                event_types=["payment.confirmed"])
        order = OrderService.create_order(user.pk, [{"sku": "PEER_EV_PACK", "quantity": 1}])
        OrderService.process_payment(order.pk, payment_id="ch-ev", payment_method="peer")
        assert OutboxEvent.objects.count() == 1  # grant.created is not subscribed

        for _ in range(20):
            call_command("billable_deliver_events", stdout=io.StringIO())
            if len(hook.seen) >= 2:
                break
            threading.Event().wait(0.05)

    assert len(hook.seen) == 2
    ids = {headers["Billable-Event-Id"] for headers, _ in hook.seen}
    assert len(ids) == 1
    for headers, body in hook.seen:
        assert verify(endpoint.secret, body, headers["Billable-Signature"])
        assert not verify(endpoint.secret, body + b" ", headers["Billable-Signature"])
        document = json.loads(body)
        assert document["id"] in ids and document["type"] == "payment.confirmed"
        assert document["data"]["order_id"] == order.pk
        assert document["data"]["total_amount"] == "3.00"
        assert endpoint.secret not in body.decode()


@pytest.mark.django_db
def test_a_rolled_back_payment_writes_no_event(
        user: Any, make_product: Callable[..., Any], make_offer: Callable[..., Any]) -> None:
    make_offer("PEER_RB_PACK", items=[(make_product("PEER_RB"), 5)], price="3")
    EventEndpoint.objects.create(name="peer", url="http://127.0.0.1:9/none")
    order = OrderService.create_order(user.pk, [{"sku": "PEER_RB_PACK", "quantity": 1}])

    with pytest.raises(RuntimeError), transaction.atomic():
        OrderService.process_payment(order.pk, payment_id="ch-rb", payment_method="peer")
        raise RuntimeError("host fails after the payment")

    assert not OutboxEvent.objects.exists()
    assert TransactionService.get_balance(user.pk, "PEER_RB") == 0


# --- API keys --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_keys_are_stored_hashed_and_scoped(client: Client) -> None:
    from billable.models import ApiKey
    from billable.services.api_keys import create_api_key

    key, token = create_api_key("peer shop", ["catalog:read"])
    row = ApiKey.objects.filter(pk=key.pk).values().get()
    assert token not in json.dumps(row, default=str)
    assert hashlib.sha256(token.encode()).hexdigest() in row.values()

    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/billing/catalog", headers=auth).status_code == 200
    refused = client.post("/api/v1/billing/orders", data={}, content_type="application/json",
                          headers=auth)
    assert refused.status_code == 403
    assert refused.json()["data"]["error"] == "insufficient_scope"
    wrong = client.get("/api/v1/billing/catalog", headers={"Authorization": f"Bearer {token}x"})
    assert wrong.status_code == 401


@pytest.mark.django_db
def test_the_admin_shows_a_new_key_once(django_user_model: Any) -> None:
    from billable.models import ApiKey

    root = django_user_model.objects.create_superuser("peer-keys", "k@example.com", "pw")
    client = Client()
    client.force_login(root)
    shown = client.post("/admin/billable/apikey/add/", {"name": "peer n8n",
                                                        "scopes": ["wallet:read"]})
    assert shown.status_code == 200
    key = ApiKey.objects.get(name="peer n8n")
    text = shown.content.decode()
    token = text[text.index(key.prefix):].split("<")[0].split('"')[0].strip()
    assert hashlib.sha256(token.encode()).hexdigest() == key.key_hash

    later = client.get(f"/admin/billable/apikey/{key.pk}/change/").content.decode()
    assert token not in later


# --- upgrading a database that is not 0.3's --------------------------------------------------


def django_process(*args: str, database: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": f"sqlite:///{database}", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "django", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180, check=False)


def test_migrate_never_succeeds_silently_on_missing_billable_tables(tmp_path: Path) -> None:
    database = tmp_path / "half.sqlite3"
    assert django_process("migrate", "auth", "--noinput", database=database).returncode == 0
    faked = django_process("migrate", "billable", "0002", "--fake", "--noinput",
                           database=database)
    assert faked.returncode == 0, faked.stderr

    done = django_process("migrate", "--noinput", database=database)

    assert done.returncode != 0
    assert "LegacyUpgradeError" in done.stderr
    assert "upgrading" in done.stderr.lower()
    with sqlite3.connect(database) as db:
        applied = {name for (name,) in db.execute(
            "SELECT name FROM django_migrations WHERE app = 'billable'")}
    assert applied == {"0001_initial", "0002_customer_merges"}


@pytest.mark.django_db
@pytest.mark.parametrize("bad_url", ["ftp://127.0.0.1/x", "not a url", "http://127.0.0.1:99999/x",
                                     "http://127.0.0.1:9/x\r\nX-Injected: 1", "https://",
                                     "http://[::1/x"])
def test_a_broken_endpoint_url_is_a_failed_attempt_not_a_crash(
        user: Any, make_product: Callable[..., Any], make_offer: Callable[..., Any],
        bad_url: str) -> None:
    from billable.models import EventDelivery

    make_offer("PEER_URL_PACK", items=[(make_product("PEER_URL"), 5)], price="3")
    with receiver() as (hook, url):
        EventEndpoint.objects.create(name="broken", url=bad_url, event_types=["grant.created"])
        EventEndpoint.objects.create(name="good", url=url, event_types=["grant.created"])
        TransactionService.grant_offer(user.pk, "PEER_URL_PACK")

        out = io.StringIO()
        call_command("billable_deliver_events", stdout=out)

    assert len(hook.seen) == 1
    assert "X-Injected" not in hook.seen[0][0]
    broken = EventDelivery.objects.get(endpoint__name="broken")
    assert broken.state == "pending" and broken.attempts == 1
    assert out.getvalue().strip().startswith("Attempted 2 deliveries")


BLOCK_OPTIONAL = r'''
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("celery", "prometheus_client"):
            raise ImportError("not installed: " + name)

sys.meta_path.insert(0, Block())
import django
django.setup()
from django.core import checks
from django.core.management import call_command
import billable.admin, billable.urls
call_command("migrate", verbosity=0)
call_command("billable_seed_demo")
call_command("billable_expire")
call_command("billable_check_ledger")
problems = [p.id for p in checks.run_checks() if p.id.startswith("billable")]
print("OPTIONAL-OK", "celery" in sys.modules, problems)
'''


def test_jobs_run_without_the_optional_celery_and_prometheus_packages() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": "",
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", BLOCK_OPTIONAL], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OPTIONAL-OK False []" in done.stdout


def test_json_log_lines_are_strict_json_whatever_the_extra_fields_hold() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from billable.logs import JsonFormatter

    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    record = logging.LogRecord("peer", logging.INFO, __file__, 1, "paid %s", ("c-1",), None)
    extras = {"amount": Decimal("9.90"), "at": datetime(2026, 1, 1, tzinfo=UTC),
              "ratio": float("nan"), "cap": {"max": float("inf")}, "loop": cyclic,
              "raw": b"\xff"}
    for name, value in extras.items():
        setattr(record, name, value)

    line = JsonFormatter().format(record)

    def strict(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    parsed = json.loads(line, parse_constant=strict)
    assert parsed["message"] == "paid c-1" and parsed["amount"] == "9.90"
    assert parsed["ratio"] == "nan" and parsed["cap"] == {"max": "inf"}
    assert "\n" not in line
