"""API keys in the admin: created with scopes (shown once), listed by prefix, revoked."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from billable.models import ApiKey

pytestmark = pytest.mark.django_db

CATALOG = "/api/v1/billing/catalog"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_in_admin(admin_client: Client, **fields: object) -> str:
    response = admin_client.post(reverse("admin:billable_apikey_add"), fields)
    assert response.status_code == 200, response.content[:2000]
    found = re.search(rb'<code id="api-key"[^>]*>(bk_[A-Za-z0-9_-]+)</code>', response.content)
    assert found, response.content[:2000]
    assert "no-store" in response["Cache-Control"]
    return found.group(1).decode()


def test_a_key_created_in_the_admin_is_shown_once_and_works(admin_client: Client) -> None:
    token = create_in_admin(admin_client, name="n8n", scopes=["catalog:read", "wallet:read"])

    key = ApiKey.objects.get()
    assert key.scopes == ["catalog:read", "wallet:read"] and key.prefix == token[:11]
    change = admin_client.get(reverse("admin:billable_apikey_change", args=[key.pk]))
    listing = admin_client.get(reverse("admin:billable_apikey_changelist"))
    for page in (change, listing):
        assert page.status_code == 200
        assert token.encode() not in page.content and key.prefix.encode() in page.content
    client = Client()
    assert client.get(CATALOG, headers=bearer(token)).status_code == 200
    assert client.post("/api/v1/billing/wallet/consume", data="{}",
                       content_type="application/json",
                       headers=bearer(token)).status_code == 403


def test_the_add_form_needs_a_scope(admin_client: Client) -> None:
    response = admin_client.post(reverse("admin:billable_apikey_add"), {"name": "none"})
    assert response.status_code == 200 and b"This field is required" in response.content
    assert not ApiKey.objects.exists()


def test_revoking_in_the_admin_refuses_the_key(admin_client: Client) -> None:
    token = create_in_admin(admin_client, name="old", scopes=["admin"])
    key = ApiKey.objects.get()
    assert Client().get(CATALOG, headers=bearer(token)).status_code == 200
    delete = reverse("admin:billable_apikey_delete", args=[key.pk])
    assert admin_client.get(delete).status_code == 403  # revoke first

    admin_client.post(reverse("admin:billable_apikey_changelist"),
                      {"action": "revoke_keys", "_selected_action": [key.pk]})

    assert ApiKey.objects.get().revoked_at is not None
    assert Client().get(CATALOG, headers=bearer(token)).status_code == 401
    assert admin_client.get(delete).status_code == 200
