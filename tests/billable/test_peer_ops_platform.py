"""Peer acceptance suite: operations (SPEC §10) and the system checks (SPEC §2).

From the contract and the user docs only (docs/operations.md, docs/events.md,
docs/api-keys.md, docs/metrics.md, docs/upgrading.md, docs/reference.md "System checks",
docs/delivery.md "Readiness").
"""

from __future__ import annotations

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

from billable.models import EventEndpoint
from billable.services import TransactionService
from tests.helpers import backend_independent, django_process

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
    ({"BILLABLE_API_TOKEN": "a-long-random-secret-with-ümlaut"}, "billable.W004"),
    ({"BILLABLE_API_TOKEN": "a long random secret with spaces"}, "billable.W004"),
    ({"BILLABLE_API_TOKEN": "a-long-random-secret-pasted\n"}, "billable.W004"),
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


@backend_independent
def test_manage_py_check_reports_an_unset_token_in_production(tmp_path: Path) -> None:
    settings = tmp_path / "peer_settings.py"
    settings.write_text("from tests.settings import *\nBILLABLE_API_TOKEN = None\nDEBUG = False\n")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "peer_settings", "DATABASE_URL": "",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run([sys.executable, "-m", "django", "check", "--deploy"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert "billable.W001" in done.stdout + done.stderr


# --- readiness -------------------------------------------------------------------------------


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


# --- outbound events -------------------------------------------------------------------------


class Hook:
    """What a loopback receiver was sent: ``(headers, body)`` per request."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], bytes]] = []


@contextmanager
def receiver() -> Iterator[tuple[Hook, str]]:
    hook = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.seen.append((dict(self.headers.items()), body))
            self.send_response(204)
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
@pytest.mark.parametrize("bad_url", ["ftp://127.0.0.1/x", "not a url", "http://127.0.0.1:99999/x",
                                     "http://127.0.0.1:9/x\r\nX-Injected: 1", "https://",
                                     "http://[::1/x"])
def test_a_broken_endpoint_url_is_a_dead_delivery_not_a_crash(
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
    # no retry can fix a URL: dead at once, with the reason, to be replayed once it is fixed
    assert (broken.state, broken.attempts) == ("dead", 1)
    assert broken.last_error.startswith("Undeliverable URL")
    assert out.getvalue().strip().startswith("Attempted 2 deliveries")


# --- upgrading a database that is not 0.3's --------------------------------------------------



@backend_independent
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


@backend_independent
def test_jobs_run_without_the_optional_celery_and_prometheus_packages() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": "",
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", BLOCK_OPTIONAL], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OPTIONAL-OK False []" in done.stdout


# --- structured logs -------------------------------------------------------------------------


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
