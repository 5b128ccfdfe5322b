"""The shipped n8n workflow executed by a real n8n against the demo API.

Two headless n8n instances (each with its own database, so both number their executions from
1) drive one demo API (``python -m examples.demo --host … --port …`` on the PostgreSQL test
database) through a loopback proxy that records every request and can lose answers. Instance A
gets the workflow and its credential through n8n's CLI (workflow first: the credential's fixed
id makes the order irrelevant); instance B through n8n's REST API (credential first, with an id
n8n chooses: the import links it by name).

n8n is installed on first use into ``~/.cache/billable-n8n/<version>`` (see ``n8n_runtime``);
without Node.js the module is skipped, or fails when ``CI=true``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.management import call_command
from django.db import connection

from billable.models import Order, Transaction
from tests.examples.n8n_proxy import LossyProxy
from tests.examples.n8n_runtime import (
    N8nInstance,
    N8nUnavailable,
    ensure_n8n,
    node_output,
    node_runs,
)
from tests.helpers import free_port, requires_postgres

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = json.loads((ROOT / "examples" / "n8n" / "billing_workflow.json").read_text())
TOKEN = "n8n-e2e-token-0123456789abcdef"
ALLOWED_HOSTS = "127.0.0.1,localhost,n8n.billable.test"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

pytestmark = [requires_postgres, pytest.mark.slow]


def database_url() -> str:
    params = connection.settings_dict
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    return (f"postgres://{params['USER']}{password}@{params['HOST']}:{params['PORT']}/"
            f"{params['NAME']}")


@pytest.fixture(scope="module")
def database(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    """The PostgreSQL test database, open to this module and to the demo; emptied afterwards.

    Not flushed between the tests (each test has its own customer): a flush under a running
    server would leave it with cached content type ids that no longer exist.
    """
    with django_db_blocker.unblock():
        yield database_url()
        call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(scope="module")
def n8n_binary() -> Path:
    try:
        return ensure_n8n()
    except N8nUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {exc}")
        pytest.skip(str(exc))


class Demo:
    """``python -m examples.demo --host 127.0.0.1 --port …`` serving the test database (it
    migrates, loads the demo catalog and plays its offline conversation first)."""

    def __init__(self, database: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "DATABASE_URL": database, "BILLABLE_API_TOKEN": TOKEN,
               "DJANGO_SETTINGS_MODULE": "examples.demo_project.settings", "DJANGO_DEBUG": "0",
               "DJANGO_ALLOWED_HOSTS": ALLOWED_HOSTS, "PYTHONPATH": str(ROOT),
               "PYTHONUNBUFFERED": "1"}
        env.pop("TELEGRAM_BOT_TOKEN", None)
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "examples.demo", "--host", "127.0.0.1", "--port",
                 str(self.port)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    def wait_serving(self, timeout: float = 180) -> None:
        """Block until the demo printed its access banner and the API answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if "stop with Ctrl+C" in self.log.read_text(errors="replace"):
                try:
                    httpx.get(f"{self.url}/api/v1/billing/catalog", timeout=5)
                    return
                except httpx.TransportError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"the demo is not serving:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def demo(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The demo API, started without waiting (n8n boots meanwhile)."""
    started = Demo(database, tmp_path_factory.mktemp("demo") / "demo.log")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def proxy(demo: Demo) -> Iterator[LossyProxy]:
    with LossyProxy(demo.url) as lossy:
        yield lossy


def configured_workflow(billable_url: str) -> dict[str, Any]:
    """The shipped workflow with its Config node pointed at ``billable_url`` (as a user does)."""
    workflow = json.loads(json.dumps(WORKFLOW))
    (config,) = [n for n in workflow["nodes"] if n["name"] == "Config"]
    for assignment in config["parameters"]["assignments"]["assignments"]:
        if assignment["name"] == "BILLABLE_URL":
            assignment["value"] = billable_url
    return workflow


def import_with_cli(instance: N8nInstance, workflow: dict[str, Any]) -> None:
    """The headless recipe of examples/n8n/README.md, workflow first."""
    files = instance.folder / "import"
    files.mkdir()
    (files / "workflow.json").write_text(json.dumps(workflow))
    credential = [{"id": "billableApiToken", "name": "Billable API", "type": "httpBearerAuth",
                   "data": {"token": TOKEN}}]
    (files / "credential.json").write_text(json.dumps(credential))
    instance.cli("import:workflow", f"--input={files / 'workflow.json'}")
    instance.cli("import:credentials", f"--input={files / 'credential.json'}")


def import_with_rest(instance: N8nInstance, workflow: dict[str, Any]) -> dict[str, Any]:
    """Credential first (n8n picks its id), then the workflow: linked by the credential name."""
    created = instance.rest("POST", "/credentials", {
        "name": "Billable API", "type": "httpBearerAuth", "data": {"token": TOKEN}})
    instance.rest("POST", "/workflows", workflow)
    return dict(created)


@pytest.fixture(scope="module")
def n8n(n8n_binary: Path, demo: Demo, proxy: LossyProxy,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, N8nInstance]]:
    """Instances ``a`` (CLI import) and ``b`` (REST import), both pointed at the proxy."""
    workflow = configured_workflow(proxy.url)
    a = N8nInstance(n8n_binary, tmp_path_factory.mktemp("n8n-a"))
    b = N8nInstance(n8n_binary, tmp_path_factory.mktemp("n8n-b"))
    try:
        b.start()
        import_with_cli(a, workflow)
        a.start()
        for instance in (a, b):
            instance.wait_ready()
            instance.set_up_owner()
        credential = import_with_rest(b, workflow)
        linked = b.rest("GET", f"/workflows/{b.workflow_id(WORKFLOW['name'])}")
        assert {n["credentials"]["httpBearerAuth"]["id"] for n in linked["nodes"]
                if "credentials" in n} == {credential["id"]}
        demo.wait_serving()
        yield {"a": a, "b": b}
    finally:
        a.stop()
        b.stop()


def execute(instance: N8nInstance, customer: str) -> dict[str, Any]:
    """Run the workflow once for ``customer`` (the Config node's EXTERNAL_ID, edited as in the
    editor, unsaved); the finished execution."""
    workflow = instance.rest("GET", f"/workflows/{instance.workflow_id(WORKFLOW['name'])}")
    (config,) = [n for n in workflow["nodes"] if n["name"] == "Config"]
    for assignment in config["parameters"]["assignments"]["assignments"]:
        if assignment["name"] == "EXTERNAL_ID":
            assignment["value"] = customer
    return instance.wait(instance.run(workflow))


def event_id(execution: dict[str, Any]) -> str:
    return str(node_output(execution, "Config")["EVENT_ID"])


def wallet(execution: dict[str, Any]) -> dict[str, int]:
    return dict(node_output(execution, "Billable: Wallet")["balances"])


def spent(customer: str, action_type: str) -> int:
    """Units the customer's ledger debited for ``action_type`` (several rows when a spend
    spans batches)."""
    return sum(row.amount for row in Transaction.objects.filter(
        user__billable_external_identities__external_id=customer, action_type=action_type,
        direction=Transaction.Direction.DEBIT))


def assert_charged_once_per_event(customer: str, events: list[str]) -> None:
    """One paid order per business event, paid with that event's key; one exchange (50
    credits) and one prediction per event; nothing more."""
    orders = Order.objects.filter(user__billable_external_identities__external_id=customer)
    assert {order.status for order in orders} == {Order.Status.PAID}
    assert sorted(str(order.payment_id) for order in orders) == sorted(f"n8n-{e}" for e in events)
    assert all(order.payment_id == f"n8n-{order.metadata['event_id']}" for order in orders)
    assert spent(customer, "exchange") == 50 * len(events)
    assert spent(customer, "prediction") == len(events)


def test_one_instance_executes_the_workflow_twice(n8n: dict[str, N8nInstance]) -> None:
    customer = "900000001"
    first = execute(n8n["a"], customer)
    second = execute(n8n["a"], customer)

    names = {node["name"] for node in WORKFLOW["nodes"]}
    for execution in (first, second):
        assert execution["status"] == "success", node_runs(execution)
        assert set(node_runs(execution)) == names  # every node ran, once
        assert all(len(runs) == 1 for runs in node_runs(execution).values())
        assert UUID.match(event_id(execution))
    assert wallet(first) == {"CREDITS": 50, "PREDICTIONS": 12}  # trial 3 + 10 - 1
    refused = node_output(second, "Billable: Claim trial")["error"]  # the node continued
    assert refused["status"] == 400 and "trial_already_used" in refused["message"]
    assert wallet(second) == {"CREDITS": 100, "PREDICTIONS": 21}
    assert node_output(second, "Billable: Check balance")["remaining"] == 21
    assert event_id(first) != event_id(second)
    assert_charged_once_per_event(customer, [event_id(first), event_id(second)])


def test_two_instances_drive_one_api_without_sharing_a_key(n8n: dict[str, N8nInstance]) -> None:
    customer = "900000002"
    a, b = n8n["a"], n8n["b"]
    from_a = execute(a, customer)
    from_b = execute(b, customer)
    with ThreadPoolExecutor(2) as pool:  # both instances at once, for the same customer
        together = list(pool.map(lambda instance: execute(instance, customer), (a, b)))
    final = execute(b, customer)

    executions = [from_a, from_b, *together, final]
    for execution in executions:
        assert execution["status"] == "success", execution["data"]["resultData"].get("error")
    # B numbers its executions from 1 as A did: keys made of execution ids would collide
    assert from_b["id"] == "1" and a.rest("GET", "/executions/1")["id"] == "1"
    events = [event_id(e) for e in executions]
    assert len(set(events)) == 5
    assert wallet(final) == {"CREDITS": 250, "PREDICTIONS": 48}  # trial 3 + 5 × (10 - 1)
    assert_charged_once_per_event(customer, events)


def test_lost_answers_are_retried_without_charging_twice(proxy: LossyProxy,
                                                         n8n: dict[str, N8nInstance]) -> None:
    customer = "900000003"
    a = n8n["a"]
    proxy.lose_responses("/confirm", 1)  # the node tries again (Retry On Fail) …
    proxy.lose_responses("/exchange", 1)
    proxy.lose_responses("/wallet/consume", 3)  # … up to 3 times: then the execution fails
    failed = execute(a, customer)
    assert failed["status"] == "error"
    assert failed["data"]["resultData"]["lastNodeExecuted"] == "Billable: Consume"

    retried = a.wait(a.retry(failed["id"]))  # n8n's "Retry with original workflow"

    assert retried["status"] == "success" and retried["retryOf"] == failed["id"]
    assert retried["id"] != failed["id"]  # a key made of the execution id would change here
    event = event_id(failed)
    assert event_id(retried) == event  # kept from the first attempt, not made again
    assert wallet(retried) == {"CREDITS": 50, "PREDICTIONS": 12}
    assert_charged_once_per_event(customer, [event])
    # the API handled every attempt (all but the first as replays); n8n lost the first answers
    for path, key, lost in (("/confirm", "payment_id", 1), ("/exchange", "idempotency_key", 1),
                            ("/wallet/consume", "idempotency_key", 3)):
        attempts = [seen for seen in proxy.requests_to(path)
                    if seen.body[key].startswith(f"n8n-{event}")]
        assert [(s.api_status, s.answered) for s in attempts] == [(200, 502)] * lost + [
            (200, 200)]


def test_the_demo_answers_the_host_names_of_django_allowed_hosts(demo: Demo) -> None:
    demo.wait_serving()
    catalog_url = f"{demo.url}/api/v1/billing/catalog"
    auth = {"Authorization": f"Bearer {TOKEN}"}

    configured = httpx.get(catalog_url, headers={**auth, "Host": "n8n.billable.test"})
    unknown = httpx.get(catalog_url, headers={**auth, "Host": "host.docker.internal"})

    assert configured.status_code == 200
    assert unknown.status_code == 400  # DJANGO_ALLOWED_HOSTS replaced the default list
