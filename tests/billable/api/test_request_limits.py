"""Requests Django refuses before the API code runs, and crafted cursors, get the JSON envelope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.test import Client

from billable.api.cursor import encode_cursor

pytestmark = pytest.mark.django_db
HEADERS = {"Authorization": "Bearer test-token-0123456789abcdef"}
BASE = "/api/v1/billing"


@pytest.fixture
def client() -> Client:
    return Client(raise_request_exception=False)


def _envelope(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False and body["data"]["error"] == code


@pytest.mark.parametrize("moment", [
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
    datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
], ids=["before-year-1", "after-year-9999"])
def test_a_cursor_whose_time_overflows_in_utc_is_a_400(client, user, moment):
    cursor = encode_cursor(moment, "01900000-0000-7000-8000-000000000000")
    response = client.get(f"{BASE}/wallet/transactions",
                          {"user_id": user.pk, "cursor": cursor}, headers=HEADERS)
    _envelope(response, 400, "invalid_input")
    assert response.json()["message"] == "Invalid cursor"


def test_a_valid_cursor_still_pages(client, user):
    cursor = encode_cursor(datetime(2030, 1, 1, tzinfo=UTC), "01900000-0000-7000-8000-000000000000")
    response = client.get(f"{BASE}/wallet/transactions",
                          {"user_id": user.pk, "cursor": cursor}, headers=HEADERS)
    assert response.status_code == 200 and response.json() == []


def test_too_many_query_parameters_get_the_envelope(client, settings):
    query = "&".join(f"p{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    _envelope(client.get(f"{BASE}/catalog?{query}", headers=HEADERS), 400, "too_many_fields")


def test_a_form_body_with_too_many_fields_gets_the_envelope(client, settings):
    body = "&".join(f"p{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = client.post(f"{BASE}/wallet/consume", body, headers=HEADERS,
                           content_type="application/x-www-form-urlencoded")
    _envelope(response, 400, "invalid_json")


def test_a_body_above_the_upload_limit_gets_the_envelope(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"product_key": "' + "x" * 2000 + '"}'
    response = client.post(f"{BASE}/wallet/consume", body, content_type="application/json",
                           headers=HEADERS)
    _envelope(response, 413, "request_too_large")


def test_the_limits_apply_without_a_token_too_and_reveal_nothing(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = client.post(f"{BASE}/orders", "x" * 2000, content_type="application/json")
    _envelope(response, 413, "request_too_large")
