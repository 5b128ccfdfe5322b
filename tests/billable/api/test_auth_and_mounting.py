"""Bearer auth, OpenAPI docs access, and the two ways of mounting ``billable.urls``."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import pytest
from django.test import override_settings
from django.urls import include, path

from tests.billable.api.conftest import Api, in_main_thread

pytestmark = pytest.mark.django_db

TOKEN = "test-token-0123456789abcdef"


BAD_HEADERS = [None, "WRONG", "Bearer WRONG", "Bearer", "Basic " + TOKEN, "Token " + TOKEN,
               "Bearer " + TOKEN + "x", "Bearer " + TOKEN[:-1]]


@pytest.mark.parametrize("kind", ["router", "django"])
@in_main_thread
async def test_requests_without_the_token_are_401(kind: str) -> None:
    for header in BAD_HEADERS:
        client = Api(kind, None)
        if header is not None:
            client.auth = {"Authorization": header}
            client._ninja.headers = client.auth
        for reply in (await client.get("/products"), await client.post("/customers/merge", {})):
            assert reply.status_code == 401, header
            assert reply.json() == {"detail": "Unauthorized"}


@pytest.mark.parametrize("kind", ["router", "django"])
@in_main_thread
async def test_scheme_is_case_insensitive(kind: str) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        client = Api(kind, None)
        client.auth = {"Authorization": f"{scheme} {TOKEN}"}
        client._ninja.headers = client.auth
        assert (await client.get("/products")).status_code == 200


@pytest.mark.parametrize("kind", ["router", "django"])
@in_main_thread
async def test_unset_or_empty_token_refuses_everything(kind: str) -> None:
    for configured in (None, ""):
        with override_settings(BILLABLE_API_TOKEN=configured):
            for token in ("", "None", "x"):
                client = Api(kind, token)
                assert (await client.get("/products")).status_code == 401


def test_docs_require_token_or_staff(client: Any, django_user_model: Any) -> None:
    for url in ("/api/v1/billing/openapi.json", "/api/v1/billing/docs/"):
        assert client.get(url).status_code == 401
        assert client.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    schema = client.get("/api/v1/billing/openapi.json",
                        headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert schema["info"]["title"] == "Billable Engine API"
    assert "/api/v1/billing/wallet/consume" in schema["paths"]
    assert schema["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"
    staff = django_user_model.objects.create(username="admin", is_staff=True)
    client.force_login(staff)
    assert client.get("/api/v1/billing/openapi.json").status_code == 200


def test_docs_can_be_switched_off(client: Any, settings: Any) -> None:
    settings.BILLABLE_SHOW_DOCS = False
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/api/v1/billing/openapi.json", headers=auth).status_code == 404
    assert client.get("/api/v1/billing/docs/", headers=auth).status_code == 404
    assert client.get("/api/v1/billing/products", headers=auth).status_code == 200


urlpatterns_include = [path("billing/", include("billable.urls"))]


def _api_urls_patterns() -> list[Any]:
    from billable.urls import api

    return [path("v1/", api.urls)]


class ApiUrlsConf:
    """A URLconf mounting ``api.urls`` directly, next to a second, independent NinjaAPI."""

    @property
    def urlpatterns(self) -> list[Any]:
        from billable.urls import build_api

        other = build_api(urls_namespace="second_billing")
        return [*_api_urls_patterns(), path("v2/", other.urls)]


def test_api_urls_mount_and_second_instance(client: Any, settings: Any) -> None:
    settings.ROOT_URLCONF = ApiUrlsConf()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for prefix in ("/v1", "/v2"):
        assert client.get(f"{prefix}/products", headers=auth).status_code == 200
        assert client.get(f"{prefix}/catalog/missing", headers=auth).status_code == 404


def test_urls_module_survives_a_second_import(client: Any) -> None:
    import billable
    import billable.urls

    original = sys.modules.pop("billable.urls")
    try:
        fresh = importlib.import_module("billable.urls")
        assert fresh.api is not original.api
        assert fresh.urlpatterns
    finally:
        sys.modules["billable.urls"] = original
        billable.urls = original  # type: ignore[attr-defined]
    response = client.get("/api/v1/billing/products",
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200


def test_reverse_through_the_namespace() -> None:
    from django.urls import reverse

    assert reverse("billable_default_api:list_catalog") == "/api/v1/billing/catalog"
