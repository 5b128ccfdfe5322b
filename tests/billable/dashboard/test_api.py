"""``GET /reports/dashboard``: the dashboard's figures as JSON, scoped, and bad input → 400."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from billable.selectors.dashboard import DashboardQuery, build_dashboard
from billable.selectors.dashboard_export import dashboard_data
from billable.services.api_keys import create_api_key
from tests.billable.dashboard.dataset import FIRST_DAY, LAST_DAY, make_dataset

pytestmark = pytest.mark.django_db
URL = "/api/v1/billing/reports/dashboard"


def get(client: Client, params: dict[str, Any] | None = None, *,
        token: str | None = None) -> Any:
    token = token or settings.BILLABLE_API_TOKEN
    return client.get(URL, params or {}, headers={"Authorization": f"Bearer {token}"})


def test_the_json_carries_the_dashboard_figures(client: Client) -> None:
    make_dataset()
    reply = get(client, {"start": FIRST_DAY.isoformat(), "end": LAST_DAY.isoformat(),
                         "bot": "111"})
    assert reply.status_code == 200
    body = reply.json()
    assert (body["success"], body["message"]) == (True, "Dashboard figures")
    expected = dashboard_data(build_dashboard(DashboardQuery(FIRST_DAY, LAST_DAY, "111")))
    assert body["data"] == expected
    assert body["data"]["bot"] == "111" and body["data"]["timezone"] == "UTC"
    assert len(body["data"]["revenue"]["XTR"]["by_day"]) == 14
    assert body["data"]["subscriptions"]["available"] is True


def test_defaults_are_the_last_thirty_days(client: Client) -> None:
    data = get(client).json()["data"]
    today = timezone.localdate()
    assert data["end"] == today.isoformat()
    assert (today - timezone.datetime.fromisoformat(data["start"]).date()).days == 29
    assert data["revenue"] == {} and data["bot"] is None


@pytest.mark.parametrize(("params", "code"), [
    ({"start": "yesterday"}, "invalid_date"),
    ({"end": "2025-02-30"}, "invalid_date"),
    ({"start": "0001-01-01"}, "invalid_date"),
    ({"end": "9999-12-31"}, "invalid_date"),
    ({"start": "2025-03-01" * 1000}, "invalid_date"),
    ({"start": "２０２５-03-01"}, "invalid_date"),
    ({"start": "2025-03-02", "end": "2025-03-01"}, "invalid_date_range"),
    ({"start": "2020-01-01", "end": "2025-01-01"}, "date_range_too_long"),
    ({"bot": "b" * 65}, "invalid_bot_id"),
    ({"bot": "a\tb"}, "invalid_bot_id"),
    ({"bot": "\x00"}, "invalid_bot_id"),
])
def test_bad_input_is_a_400_envelope_with_a_stable_code(client: Client, params: dict[str, Any],
                                                        code: str) -> None:
    reply = get(client, params)
    assert reply.status_code == 400, reply.content
    body = reply.json()
    assert body["success"] is False and body["data"] == {"error": code}
    assert body["message"]


def test_repeated_parameters_use_the_last_value(client: Client) -> None:
    reply = client.get(f"{URL}?start=2025-03-01&start=2025-03-02&end=2025-03-02",
                       headers={"Authorization": f"Bearer {settings.BILLABLE_API_TOKEN}"})
    assert reply.status_code == 200 and reply.json()["data"]["start"] == "2025-03-02"


def test_the_scope_is_reports_read(client: Client) -> None:
    _, reader = create_api_key("dashboard", ["reports:read"])
    _, orders = create_api_key("orders", ["orders:read"])
    assert get(client, token=reader).status_code == 200
    refused = get(client, token=orders)
    assert refused.status_code == 403
    assert refused.json()["data"] == {"error": "insufficient_scope",
                                      "required_scope": "reports:read"}
    assert client.get(URL).status_code == 401
