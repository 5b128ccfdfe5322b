"""API keys: stored hashed, revoked and expired keys refused, rotation without downtime."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billable.exceptions import InvalidInput
from billable.models import ApiKey
from billable.services.api_keys import authenticate_token, create_api_key, revoke_api_key

pytestmark = pytest.mark.django_db

URL = "/api/v1/billing/products"
SETTINGS_TOKEN = "test-token-0123456789abcdef"


def get(client: Client, token: str, url: str = URL) -> Any:
    return client.get(url, headers={"Authorization": f"Bearer {token}"})


def test_only_the_hash_of_a_key_is_stored() -> None:
    key, token = create_api_key("  shop backend ", ["catalog:read", "WALLET:READ"])

    row = ApiKey.objects.get(pk=key.pk)
    assert token.startswith("bk_") and len(token) >= 40
    assert row.key_hash == hashlib.sha256(token.encode()).hexdigest()
    assert row.prefix == token[:11] and token not in str(ApiKey.objects.values().get())
    assert (row.name, row.scopes) == ("shop backend", ["catalog:read", "wallet:read"])


@pytest.mark.parametrize(("name", "scopes"), [("", ["admin"]), ("x" * 101, ["admin"]),
                                               ("ok", []), ("ok", ["wallet:write"])])
def test_a_key_needs_a_name_and_known_scopes(name: str, scopes: list[str]) -> None:
    with pytest.raises(InvalidInput):
        create_api_key(name, scopes)
    assert not ApiKey.objects.exists()


def test_a_revoked_key_is_refused(client: Client) -> None:
    key, token = create_api_key("old", ["catalog:read"])
    assert get(client, token).status_code == 200

    assert revoke_api_key(key.pk) is True
    assert revoke_api_key(key.pk) is False  # idempotent

    refused = get(client, token)
    assert (refused.status_code, refused.json()) == (401, {"detail": "Unauthorized"})


def test_an_expired_key_is_refused(client: Client) -> None:
    _, token = create_api_key("temp", ["catalog:read"],
                              expires_at=timezone.now() + timedelta(hours=1))
    assert get(client, token).status_code == 200
    ApiKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert get(client, token).status_code == 401


def test_two_keys_are_valid_during_rotation(client: Client) -> None:
    old, old_token = create_api_key("backend 2024", ["catalog:read"])
    _, new_token = create_api_key("backend 2025", ["catalog:read"])

    assert [get(client, t).status_code for t in (old_token, new_token)] == [200, 200]
    revoke_api_key(old.pk)
    assert [get(client, t).status_code for t in (old_token, new_token)] == [401, 200]


def test_the_settings_token_is_a_full_scope_key_that_rotates_to_a_stored_key(
        client: Client) -> None:
    refund = "/api/v1/billing/orders/999/refund"
    assert client.post(refund, headers={"Authorization": f"Bearer {SETTINGS_TOKEN}"},
                       content_type="application/json", data="{}").status_code == 404
    _, token = create_api_key("replaces BILLABLE_API_TOKEN", ["admin"])
    assert get(client, token).status_code == 200 and get(client, SETTINGS_TOKEN).status_code == 200

    with override_settings(BILLABLE_API_TOKEN=None):
        assert get(client, SETTINGS_TOKEN).status_code == 401
        assert get(client, token).status_code == 200


def test_tokens_that_are_not_keys_cost_no_query() -> None:
    with CaptureQueriesContext(connection) as queries:
        for token in (None, "", "nope", SETTINGS_TOKEN, "bk_" + "x" * 200):
            authenticate_token(token)
    assert len(queries) == 0
    with CaptureQueriesContext(connection) as queries:
        assert authenticate_token("bk_unknown") is None
    assert len(queries) == 1


def test_last_used_is_written_at_most_once_a_minute() -> None:
    key, token = create_api_key("busy", ["catalog:read"])
    authenticate_token(token)
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    assert first is not None
    with CaptureQueriesContext(connection) as queries:
        authenticate_token(token)
    assert len(queries) == 1 and ApiKey.objects.get(pk=key.pk).last_used_at == first

    ApiKey.objects.update(last_used_at=first - timedelta(minutes=2))
    authenticate_token(token)
    assert ApiKey.objects.get(pk=key.pk).last_used_at > first - timedelta(minutes=2)


def test_a_key_reads_the_openapi_docs_and_gets_the_json_envelope(client: Client) -> None:
    _, token = create_api_key("docs reader", ["orders:write"])
    assert get(client, token, "/api/v1/billing/openapi.json").status_code == 200

    bad = client.post("/api/v1/billing/orders", data="{not json",
                      content_type="application/json",
                      headers={"Authorization": f"Bearer {token}"})
    assert bad.status_code == 400 and bad.json()["data"]["error"] == "invalid_json"
