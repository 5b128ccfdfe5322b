"""The n8n example: valid, importable structure, and every HTTP node works against the API.

The workflow is replayed in connection order. n8n expressions are evaluated by a tiny resolver
that understands exactly what the workflow uses (``$('Node').item.json.field`` and
``$execution.id``), and every request goes through the Django test client.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "n8n" / "billing_workflow.json"
EXPRESSION = re.compile(r"\{\{\s*(.*?)\s*\}\}")
NODE_REF = re.compile(r"^\$\('([^']+)'\)\.item\.json\.([\w.]+)$")


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


class Replay:
    """Evaluates node parameters and remembers each node's JSON output."""

    def __init__(self, client: Client, execution_id: str) -> None:
        self.client = client
        self.execution_id = execution_id
        self.outputs: dict[str, Any] = {}
        self.statuses: dict[str, int] = {}

    def value(self, expression: str) -> str:
        if expression == "$execution.id":
            return self.execution_id
        match = NODE_REF.match(expression)
        assert match, f"unsupported n8n expression {expression!r}"
        data = self.outputs[match.group(1)]
        for part in match.group(2).split("."):
            data = data[part]
        return str(data)

    def render(self, template: str) -> str:
        if not template.startswith("="):
            return template
        return EXPRESSION.sub(lambda m: self.value(m.group(1)), template[1:])

    def run_node(self, node: dict[str, Any]) -> None:
        params = node["parameters"]
        if node["type"] == "n8n-nodes-base.set":
            self.outputs[node["name"]] = {a["name"]: a["value"]
                                          for a in params["assignments"]["assignments"]}
        elif node["type"] == "n8n-nodes-base.httpRequest":
            self.request(node["name"], params)

    def request(self, name: str, params: dict[str, Any]) -> None:
        url = urlsplit(self.render(params["url"]))
        query = [(q["name"], self.render(q["value"]))
                 for q in params.get("queryParameters", {}).get("parameters", [])]
        path = url.path + (f"?{urlencode(query)}" if query else "")
        body = self.render(params["jsonBody"]) if params.get("sendBody") else ""
        if body:
            json.loads(body)  # the rendered body must be valid JSON, as n8n requires
        answer = self.client.generic(
            params.get("method", "GET"), path, data=body, content_type="application/json",
            headers={"Authorization": f"Bearer {settings.BILLABLE_API_TOKEN}"})
        self.statuses[name] = answer.status_code
        self.outputs[name] = answer.json()


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


def test_every_http_node_uses_bearer_credentials_not_inline_tokens() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    http = [n for n in load()["nodes"] if n["type"] == "n8n-nodes-base.httpRequest"]

    assert len(http) == 8
    for node in http:
        assert node["parameters"]["genericAuthType"] == "httpBearerAuth"
        assert "httpBearerAuth" in node["credentials"]
    assert "Bearer " not in text


@pytest.mark.django_db
def test_workflow_runs_against_the_api_twice() -> None:
    call_command("billable_seed_demo", verbosity=0)
    nodes = chain(load())

    first = Replay(Client(), execution_id="1001")
    for node in nodes:
        first.run_node(node)
    second = Replay(Client(), execution_id="1002")
    for node in nodes:
        second.run_node(node)

    assert all(status == 200 for status in first.statuses.values()), first.statuses
    assert first.outputs["Billable: Wallet"]["balances"] == {"CREDITS": 50, "PREDICTIONS": 12}
    assert first.outputs["Billable: Check balance"]["can_use"] is True
    # a second execution: the trial is refused (the node continues), the rest works again
    assert second.statuses.pop("Billable: Claim trial") == 400
    assert second.outputs["Billable: Claim trial"]["data"]["error"] == "trial_already_used"
    assert all(status == 200 for status in second.statuses.values()), second.statuses
    assert second.outputs["Billable: Wallet"]["balances"] == {"CREDITS": 100, "PREDICTIONS": 21}
