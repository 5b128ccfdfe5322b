"""The n8n example as a document: importable structure, credentials, idempotency keys.

These checks need neither n8n nor a database. The workflow is executed by a real n8n in
``test_n8n_execution.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "n8n" / "billing_workflow.json"
EVENT_ID = "{{ $('Config').item.json.EVENT_ID }}"
#: ``"payment_id": "…"`` or ``"idempotency_key": "…"`` in a node's JSON body template.
WRITE_KEY = re.compile(r'\\?"(payment_id|idempotency_key)\\?":\s*\\?"([^"\\]*)')


def load() -> dict[str, Any]:
    return json.loads(WORKFLOW.read_text(encoding="utf-8"))


def chain(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """Nodes in execution order, following ``main`` connections from the trigger."""
    by_name = {node["name"]: node for node in workflow["nodes"]}
    targets = {c["node"] for out in workflow["connections"].values()
               for branch in out["main"] for c in branch}
    (start,) = [name for name in by_name if name not in targets]
    order = [start]
    while order[-1] in workflow["connections"]:
        (branch,) = workflow["connections"][order[-1]]["main"]
        order.append(branch[0]["node"])
    return [by_name[name] for name in order]


def test_workflow_is_an_importable_n8n_document() -> None:
    workflow = load()
    names = [node["name"] for node in workflow["nodes"]]
    ids = [node["id"] for node in workflow["nodes"]]

    assert len(set(names)) == len(names) and len(set(ids)) == len(ids)
    for node in workflow["nodes"]:
        assert {"parameters", "id", "name", "type", "typeVersion", "position"} <= node.keys()
        assert node["type"].startswith("n8n-nodes-base.")
    for source, outputs in workflow["connections"].items():
        assert source in names
        for branch in outputs["main"]:
            assert all(c["node"] in names and c["type"] == "main" for c in branch)
    assert [n["name"] for n in chain(workflow)] == names  # one chain, every node reached
    assert re.fullmatch(r"[A-Za-z0-9]{16}", workflow["id"])  # re-import updates in place


def test_every_http_node_uses_the_named_bearer_credential_not_inline_tokens() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    http = [n for n in load()["nodes"] if n["type"] == "n8n-nodes-base.httpRequest"]

    assert len(http) == 8
    for node in http:
        assert node["parameters"]["genericAuthType"] == "httpBearerAuth"
        # the id and name the README's headless recipe creates the credential under
        assert node["credentials"] == {"httpBearerAuth": {"id": "billableApiToken",
                                                          "name": "Billable API"}}
    assert "Bearer " not in text


def test_every_write_key_is_made_once_per_business_event() -> None:
    """Payment ids and idempotency keys come from EVENT_ID, made by the node after the
    trigger; never from ``$execution.id`` (per n8n database, and new on every retry)."""
    nodes = chain(load())
    event_node, config = nodes[1], nodes[2]
    keys = [(node["name"], match.group(1), match.group(2)) for node in nodes
            for match in WRITE_KEY.finditer(node["parameters"].get("jsonBody", ""))]

    assert "$execution" not in WORKFLOW.read_text(encoding="utf-8")
    assert event_node["type"] == "n8n-nodes-base.crypto"
    assert event_node["parameters"] == {"action": "generate", "dataPropertyName": "event_id",
                                        "encodingType": "uuid"}
    assert {"name": "EVENT_ID", "value": "={{ $json.event_id }}"}.items() <= (
        config["parameters"]["assignments"]["assignments"][0].items())
    assert [(name, field) for name, field, _ in keys] == [
        ("Billable: Confirm payment", "payment_id"),
        ("Billable: Exchange", "idempotency_key"),
        ("Billable: Consume", "idempotency_key")]
    assert all(EVENT_ID in template for _, _, template in keys)
    assert len({template for _, _, template in keys}) == 3  # one key per operation
    retried = [n for n in nodes if n.get("retryOnFail")]
    assert [n["name"] for n in retried] == [name for name, _, _ in keys]
