"""POST /demo/trial-grant, POST /referrals, GET /referrals/stats, POST /customers/merge."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from billable.models import ExternalIdentity, Referral, TrialHistory
from tests.billable.api.conftest import in_main_thread

pytestmark = pytest.mark.django_db


@pytest.fixture
def trial_offer(make_offer: Any, make_product: Any) -> Any:
    product = make_product("TRIAL_PRODUCT", name="Trial Product")
    return make_offer("TRIAL_SKU", name="Trial Plan", price="0", items=[(product, 10)])


async def _history(kind: str, value: Any) -> int:
    return await TrialHistory.objects.filter(
        identity_type=kind, identity_hash=TrialHistory.generate_identity_hash(value)).acount()


@in_main_thread
async def test_trial_grant_records_identity_and_refuses_replay(api: Any, user: Any,
                                                               trial_offer: Any) -> None:
    payload = {"user_id": user.pk, "provider": "telegram", "external_id": "12345678",
               "sku": "trial_sku", "metadata": {"campaign": "spring"}}
    reply = await api.post("/demo/trial-grant", payload)
    assert reply.status_code == 200
    assert reply.json() == {"success": True, "message": "Trial granted", "data": {
        "products": ["Trial Product"],
        "metadata": {"campaign": "spring", "identities": {"telegram": "12345678"}}}}
    assert await _history("telegram", "12345678") == 1
    assert (await api.get("/wallet", user_id=user.pk)).json()["balances"] == {
        "TRIAL_PRODUCT": 10}
    replay = await api.post("/demo/trial-grant", payload)
    assert replay.status_code == 400
    assert replay.json()["success"] is False
    assert replay.json()["data"]["error"] == "trial_already_used"
    assert (await api.get("/wallet", user_id=user.pk)).json()["balances"] == {
        "TRIAL_PRODUCT": 10}


@in_main_thread
async def test_trial_grant_with_explicit_identities(api: Any, user: Any,
                                                    trial_offer: Any) -> None:
    reply = await api.post("/demo/trial-grant", {"user_id": user.pk, "sku": "TRIAL_SKU",
                                                 "identities": {"telegram": 5454776146}})
    assert reply.status_code == 200
    assert await _history("telegram", 5454776146) == 1


@in_main_thread
async def test_trial_grant_without_identity_is_once_per_user(api: Any, user: Any,
                                                             trial_offer: Any) -> None:
    payload = {"user_id": user.pk, "sku": "TRIAL_SKU"}
    assert (await api.post("/demo/trial-grant", payload)).status_code == 200
    again = await api.post("/demo/trial-grant", payload)
    assert again.status_code == 400
    assert again.json()["data"]["error"] == "trial_already_used"


@in_main_thread
async def test_trial_grant_refuses_paid_and_unknown_offers(api: Any, user: Any,
                                                           bundle: Any) -> None:
    paid = await api.post("/demo/trial-grant", {"user_id": user.pk, "sku": "PACK_STARTER"})
    assert paid.status_code == 400
    unknown = await api.post("/demo/trial-grant", {"user_id": user.pk, "sku": "NOPE"})
    assert unknown.status_code == 400
    assert unknown.json()["message"] == "Trial offer not found"
    assert (await api.get("/wallet", user_id=user.pk)).json()["balances"] == {}
    assert await TrialHistory.objects.acount() == 0


@in_main_thread
async def test_referral_by_ids_and_stats(api: Any, make_user: Any) -> None:
    referrer, referee = await sync_to_async(make_user)(), await sync_to_async(make_user)()
    payload = {"referrer_id": referrer.pk, "referee_id": referee.pk, "metadata": {"via": "link"}}
    reply = await api.post("/referrals", payload)
    assert reply.status_code == 200
    data = reply.json()["data"]
    assert reply.json()["message"] == "Referral assigned"
    assert data["created"] is True and data["metadata"] == {"via": "link"}
    assert await Referral.objects.filter(pk=data["referral_id"]).aexists()
    again = await api.post("/referrals", payload)
    assert again.status_code == 200 and again.json()["data"]["created"] is False
    stats = await api.get("/referrals/stats", user_id=referrer.pk)
    assert stats.json() == {"success": True, "message": "Stats retrieved",
                            "data": {"count": 1}}


@in_main_thread
async def test_referral_by_identity(api: Any, make_user: Any) -> None:
    referrer, referee = await sync_to_async(make_user)(), await sync_to_async(make_user)()
    await ExternalIdentity.objects.acreate(user=referrer, provider="telegram", external_id="1")
    await ExternalIdentity.objects.acreate(user=referee, provider="telegram", external_id="2")
    reply = await api.post("/referrals", {"provider": "telegram", "referrer_external_id": "1",
                                          "referee_external_id": 2})
    assert reply.status_code == 200 and reply.json()["data"]["created"] is True
    stats = await api.get("/referrals/stats", provider="telegram", external_id="1")
    assert stats.json()["data"]["count"] == 1


@in_main_thread
async def test_referral_errors(api: Any, make_user: Any) -> None:
    a, b, c = [await sync_to_async(make_user)() for _ in range(3)]
    await ExternalIdentity.objects.acreate(user=a, provider="telegram", external_id="10")
    cases = [
        ({}, "Provide valid identifiers"),
        ({"referrer_id": a.pk}, "Provide valid identifiers"),
        ({"referrer_id": 999999, "referee_id": a.pk}, "Referrer user not found in database"),
        ({"referrer_id": a.pk, "referee_id": 999999}, "Referee user not found in database"),
        ({"provider": "telegram", "referrer_external_id": "0", "referee_external_id": "10"},
         "Referrer identity not found"),
        ({"provider": "telegram", "referrer_external_id": "10", "referee_external_id": "0"},
         "Referee identity not found"),
        ({"referrer_id": a.pk, "referee_id": a.pk}, "Referrer and referee cannot be same"),
    ]
    for payload, message in cases:
        reply = await api.post("/referrals", payload)
        assert reply.status_code == 400, payload
        assert reply.json()["message"] == message
    assert (await api.post("/referrals", {"referrer_id": a.pk, "referee_id": b.pk})
            ).status_code == 200
    second = await api.post("/referrals", {"referrer_id": c.pk, "referee_id": b.pk})
    assert second.status_code == 400
    assert second.json()["message"] == "Relationship exists or invalid IDs"
    assert not await ExternalIdentity.objects.filter(external_id="0").aexists()


@in_main_thread
async def test_referral_stats_requires_user(api: Any) -> None:
    for params in ({}, {"external_id": "ghost"}):
        reply = await api.get("/referrals/stats", **params)
        assert reply.status_code == 400
        assert "user_id is required" in reply.json()["message"]


@in_main_thread
async def test_merge_customers(api: Any, make_user: Any) -> None:
    target, source = await sync_to_async(make_user)(), await sync_to_async(make_user)()
    await ExternalIdentity.objects.acreate(user=source, provider="telegram", external_id="s")
    reply = await api.post("/customers/merge", {"target_user_id": target.pk,
                                                "source_user_id": source.pk})
    assert reply.status_code == 200
    body = reply.json()
    assert body["success"] is True
    assert body["message"] == f"Successfully merged customer {source.pk} into {target.pk}"
    assert body["moved_identities"] == 1
    assert await ExternalIdentity.objects.filter(user=target, external_id="s").aexists()


@in_main_thread
async def test_merge_customers_errors(api: Any, make_user: Any) -> None:
    target, other = await sync_to_async(make_user)(), await sync_to_async(make_user)()
    same = await api.post("/customers/merge", {"target_user_id": target.pk,
                                               "source_user_id": target.pk})
    assert same.status_code == 400 and "different" in same.json()["message"]
    missing = await api.post("/customers/merge", {"target_user_id": target.pk,
                                                  "source_user_id": 999999})
    assert missing.status_code == 400
    assert missing.json()["message"] == "Source user 999999 does not exist."
    await ExternalIdentity.objects.acreate(user=target, provider="telegram", external_id="t1")
    await ExternalIdentity.objects.acreate(user=other, provider="telegram", external_id="t2")
    conflict = await api.post("/customers/merge", {"target_user_id": target.pk,
                                                   "source_user_id": other.pk})
    assert conflict.status_code == 400
    assert conflict.json()["message"].startswith("Identity conflict")
