"""Scopes on every endpoint: a table test over ALL routes of the mounted billing API.

The routes come from the API's own OpenAPI document, so an endpoint added without a line in
``billable.api.auth.ROUTE_SCOPES`` fails ``test_every_route_declares_a_scope``, and every
declared scope is proven enforced (403 without it, through with it) by the parametrized test.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from ninja import Router
from ninja.testing import TestAsyncClient

from billable.api.auth import ROUTE_SCOPES, BearerAuth, enforce_scopes
from billable.scopes import ADMIN, SCOPES
from billable.services.api_keys import create_api_key
from billable.urls import build_api
from tests.billable.api.conftest import in_main_thread

pytestmark = pytest.mark.django_db

MOUNT = "/api/v1/billing"
PATH_VALUES = {"order_id": "1", "product_key": "CREDITS", "sku": "PACK", "token": "t0ken"}


def all_routes() -> list[tuple[str, str]]:
    """Every (METHOD, path) of the billing API, from its OpenAPI document."""
    schema = build_api(urls_namespace="scope_table").get_openapi_schema(path_prefix="")
    return sorted((method.upper(), path) for path, operations in schema["paths"].items()
                  for method in operations)


def concrete(path: str) -> str:
    return MOUNT + re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)


def call(client: Client, method: str, path: str, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "GET":
        return client.get(concrete(path), headers=headers)
    return client.post(concrete(path), data="{}", content_type="application/json",
                       headers=headers)


def test_every_route_declares_a_scope() -> None:
    routes = all_routes()
    assert len(routes) >= 21
    assert set(routes) == set(ROUTE_SCOPES), "add new endpoints to ROUTE_SCOPES"
    assert set(ROUTE_SCOPES.values()) <= set(SCOPES) - {ADMIN}


@pytest.mark.parametrize(("method", "path"), all_routes())
def test_scope_is_enforced(client: Client, method: str, path: str) -> None:
    scope = ROUTE_SCOPES[(method, path)]
    _, allowed = create_api_key("only this", [scope])
    _, others = create_api_key("everything else", [s for s in SCOPES if s not in (scope, ADMIN)])
    _, admin = create_api_key("admin", [ADMIN])

    refused = call(client, method, path, others)
    assert refused.status_code == 403
    assert refused.json() == {
        "success": False, "message": f"This API key lacks the '{scope}' scope",
        "data": {"error": "insufficient_scope", "required_scope": scope}}
    for token in (allowed, admin):
        assert call(client, method, path, token).status_code not in (401, 403)
    missing = call(client, method, path, None)
    assert (missing.status_code, missing.json()) == (401, {"detail": "Unauthorized"})


@in_main_thread
async def test_a_route_missing_from_the_table_needs_admin() -> None:
    router = Router(auth=BearerAuth())
    router.add_decorator(enforce_scopes, mode="view")

    @router.get("/undeclared")
    async def undeclared(request: Any) -> dict[str, bool]:
        return {"ok": True}

    create = sync_to_async(create_api_key)
    _, narrow = await create("narrow", [s for s in SCOPES if s != ADMIN])
    _, admin = await create("admin", [ADMIN])
    client = TestAsyncClient(router)

    refused = await client.get("/undeclared", headers={"Authorization": f"Bearer {narrow}"})
    assert refused.status_code == 403
    assert refused.json()["data"] == {"error": "insufficient_scope", "required_scope": ADMIN}
    allowed = await client.get("/undeclared", headers={"Authorization": f"Bearer {admin}"})
    assert allowed.json() == {"ok": True}
