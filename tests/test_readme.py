"""The README's examples run as written, so the documentation cannot rot."""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.test import Client, override_settings

from tests.examples.readme_runner import CurlShell, code_blocks, run_python_blocks

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def demo_token() -> str:
    """The API token the demo project uses by default (the README's curl lines rely on it)."""
    text = (ROOT / "examples" / "demo_project" / "settings.py").read_text()
    match = re.search(r'"BILLABLE_API_TOKEN", "([^"]+)"', text)
    assert match, "demo settings lost their default token"
    return match.group(1)


@pytest.mark.django_db(transaction=True)
def test_readme_python_blocks_run_in_order() -> None:
    from billable.models import Transaction

    namespace: dict[str, Any] = {"__name__": "readme"}
    ran = run_python_blocks(README, namespace)

    assert ran >= 8
    alice = namespace["alice"]
    # the tour's own assertions ran; check the ledger it leaves behind as a whole
    kinds = sorted(Transaction.objects.filter(user=alice).values_list("action_type", flat=True))
    assert {"purchase", "usage", "refund", "exchange", "manual_grant"} <= set(kinds)
    assert namespace["dp"].sub_routers, "setup_billing included no routers"


def test_readme_mentions_the_two_quick_start_commands() -> None:
    shell = "\n".join(source for _, source in code_blocks(README, "bash"))
    assert "python3 dev.py demo" in shell
    assert "python3 dev.py test" in shell


#: Modules a snippet may import that come with an extra rather than with the base install.
EXTRA_OF_MODULE = {"aiogram": "bot", "bot_kit": "bot", "psycopg": "postgres",
                   "psycopg_pool": "postgres", "redis": "redis"}


def _extras_used_by_docs() -> set[str]:
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    used = set()
    for page in pages:
        for _, source in code_blocks(page, "python"):
            tree = ast.parse(source.replace("await ", "").replace("async with", "with"))
            for node in ast.walk(tree):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                used |= {EXTRA_OF_MODULE[n.split(".")[0]] for n in names
                         if n.split(".")[0] in EXTRA_OF_MODULE}
            if "django.db.backends.postgresql" in source:
                used.add("postgres")
        for named in re.findall(r"billable\[([\w,]+)\]", page.read_text(encoding="utf-8")):
            used |= set(named.split(","))
    return used


def test_readme_install_line_names_every_extra_the_docs_use() -> None:
    shell = "\n".join(source for _, source in code_blocks(README, "bash"))
    match = re.search(r'pip install "billable\[([\w,]+)\]"', shell)
    assert match, "the README lost its install line"
    installed = set(match.group(1).split(","))
    offered = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]) - {"dev"}

    used = _extras_used_by_docs()
    assert {"bot", "postgres", "redis"} <= used
    assert used <= installed <= offered


@pytest.mark.django_db
def test_readme_rest_flow_runs_against_the_demo_catalog() -> None:
    call_command("billable_seed_demo", verbosity=0)
    script = next(source for _, source in code_blocks(README, "bash") if "curl" in source)

    with override_settings(BILLABLE_API_TOKEN=demo_token()):
        shell = CurlShell(Client())
        shell.run(script)

    failures = [(r.method, r.path, r.status, r.body) for r in shell.responses if r.status >= 400]
    assert failures == []
    assert len(shell.responses) >= 10
    order_id = shell.variables["ORDER_ID"]
    confirmed = next(r for r in shell.responses if r.path.endswith(f"/{order_id}/confirm"))
    assert json.loads(confirmed.body)["data"]["status"] == "paid"
    balance = json.loads(shell.responses[-1].body)
    assert balance["can_use"] is True and balance["product_key"] == "PREDICTIONS"


@pytest.mark.django_db(transaction=True)
async def test_readme_bot_gates_the_export_command_on_quota() -> None:
    from billable.models import ExternalIdentity
    from billable.services import TransactionService
    from bot_kit.testing import FakeSession, UpdateFactory, make_bot

    namespace: dict[str, Any] = {"__name__": "readme"}
    await sync_to_async(run_python_blocks)(README, namespace)
    dp, session, updates = namespace["dp"], FakeSession(), UpdateFactory()
    bot = make_bot(session)

    await dp.feed_update(bot, updates.command("export"))  # no quota yet: the paywall
    user = await ExternalIdentity.aget_user_by_identity(str(updates.default_user.id),
                                                        provider="telegram")
    await TransactionService.agrant_offer(user.pk, "off_pdf_10")
    await dp.feed_update(bot, updates.command("export"))

    texts = [str(call.params.get("text")) for call in session.calls_to("sendMessage")]
    assert texts[0].startswith("You have run out of PDF export")
    assert texts[1] == "Here is your PDF."
    assert await TransactionService.aget_balance(user.pk, "PDF_EXPORT") == 9


OWN_DOCS = ["README.md", "docs/index.md", "docs/architecture.md", "docs/reference.md",
            "docs/compatibility.md", "docs/upgrading.md", "docs/scaling.md", "examples/README.md",
            "examples/n8n/README.md"]


@pytest.mark.parametrize("page", OWN_DOCS)
def test_relative_links_point_to_existing_files(page: str) -> None:
    path = ROOT / page
    targets = re.findall(r"\]\((?!https?://|#)([^)#\s]+)", path.read_text(encoding="utf-8"))

    missing = [t for t in targets if not (path.parent / t).exists()]
    assert missing == [], f"{page} links to missing files: {missing}"


def _normalise(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path.rstrip("/"))


def test_reference_lists_exactly_the_api_operations() -> None:
    from billable.urls import api

    schema = api.get_openapi_schema()
    served = {(method.upper(), _normalise(path.removeprefix("/api/v1/billing")))
              for path, operations in schema["paths"].items() for method in operations}
    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    documented = {(m, _normalise(p)) for m, p in re.findall(r"`(GET|POST) (/[\w/{}.-]+)`", text)}
    documented -= {("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/docs/assets/{}")}

    assert documented == served


def test_reference_lists_every_management_command() -> None:
    from django.core.management import get_commands

    ours = {name for name, app in get_commands().items() if app in ("billable", "bot_kit")}
    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")

    assert {name for name in ours if f"`{name}" in text} == ours
