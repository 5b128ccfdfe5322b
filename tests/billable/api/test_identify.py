"""POST /identify: resolve-or-create users from external identities."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from tests.billable.api.conftest import in_main_thread

pytestmark = pytest.mark.django_db


@in_main_thread
async def test_identify_creates_user_then_resolves_it(api: Any) -> None:
    payload = {"provider": "telegram", "external_id": " 9999 ", "profile": {"first_name": "Ann"}}
    first = await api.post("/identify", payload)
    assert first.status_code == 200
    data = first.json()
    assert data["created_user"] is True and data["created_identity"] is True
    assert data["external_id"] == "9999" and data["provider"] == "telegram"
    assert data["trial_eligible"] is True
    assert data["metadata"]["first_name"] == "Ann"
    user = await get_user_model().objects.aget(pk=data["user_id"])
    assert user.username == "billable_telegram_9999"
    assert (user.first_name, user.last_name) == ("Ann", "")

    again = await api.post("/identify", {"provider": "telegram", "external_id": 9999,
                                         "profile": {"username": "ann"}})
    assert again.status_code == 200
    assert again.json()["user_id"] == data["user_id"]
    assert again.json()["created_user"] is False and again.json()["created_identity"] is False
    assert again.json()["metadata"] == {"first_name": "Ann", "username": "ann"}

    wallet = await api.get("/wallet", provider="telegram", external_id="9999")
    assert wallet.json() == {"user_id": data["user_id"], "balances": {}}


@in_main_thread
async def test_identify_default_provider(api: Any) -> None:
    reply = await api.post("/identify", {"external_id": "abc"})
    assert reply.status_code == 200
    assert reply.json()["provider"] == "default"


@in_main_thread
async def test_identify_never_attaches_to_existing_account(api: Any, make_user: Any) -> None:
    from asgiref.sync import sync_to_async

    existing = await sync_to_async(make_user)(username="billable_telegram_42")
    reply = await api.post("/identify", {"provider": "telegram", "external_id": "42"})
    assert reply.status_code == 200
    assert reply.json()["user_id"] != existing.pk


@in_main_thread
async def test_identify_rejects_bad_external_id(api: Any) -> None:
    for external_id in ("", "   ", None, "x" * 256, "a\x00b", True, 1.5, ["1"]):
        reply = await api.post("/identify", {"provider": "telegram", "external_id": external_id})
        assert reply.status_code == 422, external_id
    assert await get_user_model().objects.acount() == 0


@in_main_thread
async def test_identify_reports_used_trial(api: Any, make_offer: Any, make_product: Any) -> None:
    from asgiref.sync import sync_to_async

    product = await sync_to_async(make_product)("TRIAL_P")
    await sync_to_async(make_offer)("TRIAL", items=[(product, 1)])
    identify = {"provider": "telegram", "external_id": "77"}
    user_id = (await api.post("/identify", identify)).json()["user_id"]
    claim = await api.post("/demo/trial-grant", {"user_id": user_id, "sku": "trial",
                                                 "identities": {"telegram": "77"}})
    assert claim.status_code == 200
    assert (await api.post("/identify", identify)).json()["trial_eligible"] is False


@in_main_thread
async def test_published_resolve_helper_creates_then_reuses(api: Any) -> None:
    from billable.api import aresolve_user_id_by_identity

    first = await aresolve_user_id_by_identity("n8n", " 700 ")
    assert await aresolve_user_id_by_identity("n8n", "700") == first
    user = await get_user_model().objects.aget(pk=first)
    assert user.username == "billable_n8n_700"
