"""The n8n workflow that receives billable's signed events (examples/n8n/events_workflow.json).

* its structure: a Webhook with the raw body, a Code node verifying ``Billable-Signature``, an
  If node answering 200 or 401 through *Respond to Webhook*;
* the Code node's JavaScript run by Node.js on bodies signed by billable's Python signer (valid,
  tampered, wrong secret, stale timestamp, no raw body);
* the workflow active in a real n8n (``slow``; n8n installed as for test_n8n_execution.py)
  receiving events from billable's own worker — delivered — and refusing a forged request
  (imported and published with n8n's CLI, run with ``NODE_FUNCTION_ALLOW_BUILTIN=crypto``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from billable.events import signing
from tests.helpers import requires_postgres

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_PATH = ROOT / "examples" / "n8n" / "events_workflow.json"
SECRET = "whsec_n8n_events_test"

HARNESS = r"""
const fs = require('fs');
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const items = input.items.map((it) => ({
  json: { headers: it.headers },
  binary: it.body === null ? undefined : { data: { data: it.body, mimeType: 'application/json' } },
}));
const context = { helpers: { getBinaryDataBuffer: async (i, name) =>
  Buffer.from(items[i].binary[name].data, 'base64') } };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const run = new AsyncFunction('$input', 'require', input.code);
run.call(context, { all: () => items }, require)
  .then((out) => process.stdout.write(JSON.stringify(out)))
  .catch((err) => { console.error(err); process.exit(1); });
"""


def workflow() -> dict[str, Any]:
    return dict(json.loads(WORKFLOW_PATH.read_text()))


def node(document: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [n for n in document["nodes"] if n["name"] == name]
    return dict(found)


def verify_code(secret: str = SECRET) -> str:
    code = str(node(workflow(), "Verify signature")["parameters"]["jsCode"])
    assert code.count("'whsec_replace_me'") == 1
    return code.replace("'whsec_replace_me'", json.dumps(secret))


def test_workflow_structure() -> None:
    document = workflow()
    hook = node(document, "Billable event")
    assert hook["type"] == "n8n-nodes-base.webhook"
    assert hook["parameters"]["httpMethod"] == "POST"
    assert hook["parameters"]["responseMode"] == "responseNode"
    assert hook["parameters"]["options"]["rawBody"] is True  # the HMAC needs the exact bytes
    assert node(document, "Verify signature")["type"] == "n8n-nodes-base.code"
    links = {name: [[c["node"] for c in branch] for branch in out["main"]]
             for name, out in document["connections"].items()}
    assert links == {"Billable event": [["Verify signature"]],
                     "Verify signature": [["Signature valid?"]],
                     "Signature valid?": [["Event"], ["Reject"]],
                     "Event": [["Acknowledge"]]}
    assert node(document, "Acknowledge")["parameters"]["options"]["responseCode"] == 200
    assert node(document, "Reject")["parameters"]["options"]["responseCode"] == 401


def run_code(items: list[dict[str, Any]], *, secret: str = SECRET) -> list[dict[str, Any]]:
    done = subprocess.run(["node", "-e", HARNESS], input=json.dumps(
        {"code": verify_code(secret), "items": items}), capture_output=True, text=True,
        timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [item["json"] for item in json.loads(done.stdout)]


def signed_item(body: bytes, header: str | None = None) -> dict[str, Any]:
    return {"headers": {"billable-signature": header or signing.sign(SECRET, body)},
            "body": base64.b64encode(body).decode()}


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_code_node_accepts_python_signatures_and_rejects_forgeries() -> None:
    body = json.dumps({"id": str(uuid.uuid4()), "type": "payment.confirmed",
                       "created_at": "2026-01-01T00:00:00Z",
                       "data": {"note": "caf\u00e9 \u2603", "amount": "1.50"}},
                      separators=(",", ":")).encode()
    stale = signing.sign(SECRET, body, timestamp=int(time.time()) - 3600)
    results = run_code([
        signed_item(body),
        {**signed_item(body), "body": base64.b64encode(body + b" ").decode()},
        {**signed_item(body), "headers": {"billable-signature": signing.sign("other", body)}},
        signed_item(body, stale),
        {"headers": {"billable-signature": signing.sign(SECRET, body)}, "body": None},
        signed_item(body, "t=abc,v1=00"),
    ])
    assert results[0] == {"valid": True, "reason": "ok", "event": json.loads(body)}
    assert [(r["valid"], r["reason"]) for r in results[1:]] == [
        (False, "signature mismatch"), (False, "signature mismatch"),
        (False, "timestamp missing or outside the tolerance"),
        (False, 'no raw body: turn on the Webhook option "Raw Body"'),
        (False, "timestamp missing or outside the tolerance")]


# --- the workflow in a real n8n ---------------------------------------------------------------


@pytest.fixture(scope="module")
def n8n_events(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An n8n with the events workflow imported and active; yields its webhook URL."""
    from tests.examples.n8n_runtime import N8nInstance, N8nUnavailable, ensure_n8n

    try:
        binary = ensure_n8n()
    except N8nUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {exc}")
        pytest.skip(str(exc))
    instance = N8nInstance(binary, tmp_path_factory.mktemp("n8n-events"))
    document = workflow()
    for item in document["nodes"]:
        if item["name"] == "Verify signature":
            item["parameters"]["jsCode"] = verify_code()
    document["active"] = True
    path = instance.folder / "events.json"
    path.write_text(json.dumps(document))
    previous = os.environ.get("NODE_FUNCTION_ALLOW_BUILTIN")
    os.environ["NODE_FUNCTION_ALLOW_BUILTIN"] = "crypto"  # read by instance.env()
    try:
        instance.cli("import:workflow", f"--input={path}")
        instance.cli("publish:workflow", f"--id={document['id']}")
        instance.start()
        instance.wait_ready()
        yield f"{instance.url}/webhook/billable-events"
    finally:
        instance.stop()
        if previous is None:
            os.environ.pop("NODE_FUNCTION_ALLOW_BUILTIN", None)
        else:
            os.environ["NODE_FUNCTION_ALLOW_BUILTIN"] = previous


def wait_for_webhook(url: str) -> None:
    # n8n's first answers can take seconds on a loaded 2-core machine (httpx's default read
    # timeout, 5 s, failed a full CI run once): a slow answer is "not yet", not a failure.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.post(url, content=b"{}", timeout=30).status_code != 404:
                return
        except httpx.TimeoutException:
            continue
        time.sleep(0.5)
    raise AssertionError("the webhook was never registered")


@requires_postgres  # like test_n8n_execution.py: once per suite run, in the PostgreSQL pass
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_real_n8n_accepts_signed_events_and_refuses_forged_ones(
        n8n_events: str, user: Any, make_product: Any, make_offer: Any) -> None:
    from billable.events import Deliverer
    from billable.events.outbox import subscribed_types
    from billable.models import EventDelivery, EventEndpoint
    from billable.services import OrderService

    wait_for_webhook(n8n_events)
    subscribed_types.clear()
    EventEndpoint.objects.create(url=n8n_events, secret=SECRET,
                                 event_types=["payment.confirmed", "grant.created"])
    order = OrderService.create_order(user.id, [{"sku": make_offer(
        "PACK", items=[(make_product("TOKENS"), 5)], price="2").sku}])
    OrderService.process_payment(order.id, "N8N-PAY")

    assert Deliverer(timeout=30, lease=60).run_once() == {"delivered": 2}
    assert set(EventDelivery.objects.values_list("last_status", flat=True)) == {200}

    body = b'{"id":"forged","type":"payment.confirmed","created_at":"x","data":{}}'
    forged = httpx.post(n8n_events, content=body, timeout=30, headers={
        "Content-Type": "application/json",
        signing.SIGNATURE_HEADER: signing.sign("not-the-secret", body)})
    assert forged.status_code == 401 and forged.json() == {"error": "signature mismatch"}
    genuine = httpx.post(n8n_events, content=body, timeout=30, headers={
        "Content-Type": "application/json", signing.SIGNATURE_HEADER: signing.sign(SECRET, body)})
    assert genuine.status_code == 200 and genuine.json() == {
        "received": "forged", "type": "payment.confirmed"}
    subscribed_types.clear()
