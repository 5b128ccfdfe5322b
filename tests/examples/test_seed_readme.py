"""The published 0.2 README's examples, run against this code base.

Every Python snippet and REST flow of the 0.2 README must keep working (SPEC: compatibility).
The snippets are reproduced here with the same calls, argument names and lookups the README
uses (lower-case SKUs and keys included), so a 0.2 user can switch without touching code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client, override_settings

ROOT = Path(__file__).resolve().parents[2]
BASE = "/api/v1/billing"


# -- helpers -----------------------------------------------------------------------------------


def auth() -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {settings.BILLABLE_API_TOKEN}"}


def post(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.post(f"{BASE}{path}", data=json.dumps(body),
                       content_type="application/json", **auth())


@pytest.fixture
def pdf_export_pack(make_product: Callable[..., Any], make_offer: Callable[..., Any]) -> Any:
    product = make_product("PDF_EXPORT", name="PDF export")
    return make_offer("OFF_PDF_PACK", items=[(product, 3)], price="4.99")


# -- Python service layer ----------------------------------------------------------------------


def readme_report_generator(report_id: int) -> Callable[[Any], Any]:
    """The README's ``generate_pdf_report`` (it reads ``report_id`` from the enclosing scope)."""
    from billable.services import TransactionService

    async def generate_pdf_report(user: Any) -> None:
        result = await TransactionService.acheck_quota(user.id, "pdf_export")
        if not result["can_use"]:
            raise PermissionError(f"Upgrade required: {result['message']}")
        await TransactionService.aconsume_quota(
            user_id=user.id,
            product_key="pdf_export",
            idempotency_key=f"report_{report_id}",
        )

    return generate_pdf_report


@pytest.mark.django_db(transaction=True)
async def test_readme_quota_check_consumes_once_per_report(user: Any, pdf_export_pack: Any) -> None:
    from billable.services import TransactionService

    await TransactionService.agrant_offer(user.id, pdf_export_pack)

    await readme_report_generator(101)(user)
    await readme_report_generator(101)(user)  # same report: the idempotency key protects it
    assert await TransactionService.aget_balance(user.id, "pdf_export") == 2

    await readme_report_generator(102)(user)
    assert await TransactionService.aget_balance(user.id, "PDF_EXPORT") == 1


@pytest.mark.django_db(transaction=True)
async def test_readme_quota_check_refuses_without_quota(user: Any, pdf_export_pack: Any) -> None:
    with pytest.raises(PermissionError, match="Upgrade required: No active quota for PDF_EXPORT"):
        await readme_report_generator(7)(user)


@pytest.mark.django_db(transaction=True)
async def test_readme_idempotent_replay_reports_original_usage(
    user: Any, pdf_export_pack: Any
) -> None:
    from billable.services import TransactionService

    await TransactionService.agrant_offer(user.id, pdf_export_pack)
    first = await TransactionService.aconsume_quota(
        user_id=user.id, product_key="pdf_export", idempotency_key="report_9")
    replay = await TransactionService.aconsume_quota(
        user_id=user.id, product_key="pdf_export", idempotency_key="report_9")

    assert first["success"] is True and first["message"] == "Quota consumed"
    assert replay["success"] is True and "idempotent" in replay["message"]
    assert replay["usage_id"] == first["usage_id"]


@pytest.mark.django_db(transaction=True)
async def test_readme_custom_order(user: Any, make_product: Callable[..., Any],
                                   make_offer: Callable[..., Any]) -> None:
    from billable.services import OrderService

    product = await sync_to_async(make_product)("PREMIUM", product_type="period")
    await sync_to_async(make_offer)("OFF_PREMIUM_PACK", items=[(product, 1, "days", 30)],
                                    price="9.99")

    order = await OrderService.acreate_order(
        user_id=user.id,
        items=[{"sku": "off_premium_pack", "quantity": 1}],
        metadata={"source": "web_checkout"},
    )

    assert order.status == "pending"
    assert order.total_amount == Decimal("9.99")
    assert order.currency == "USD"
    assert order.metadata["source"] == "web_checkout"
    data = await OrderService.aserialize_order_to_dict(order)
    assert [(i["sku"], i["quantity"]) for i in data["items"]] == [("OFF_PREMIUM_PACK", 1)]


async def claim_welcome_trial(user_id: int, telegram_id: str) -> dict[str, Any]:
    """The README's trial example, call for call."""
    from billable.models import Offer, TrialHistory
    from billable.services import TransactionService

    identities = {"telegram": telegram_id}
    if await TrialHistory.ahas_used_trial(identities=identities):
        return {"success": False, "reason": "trial_already_used"}

    offer = await Offer.objects.aget(sku="off_welcome_trial")

    batches = await sync_to_async(TransactionService.grant_offer)(
        user_id=user_id,
        offer=offer,
        source="welcome_bonus",
        metadata={"identities": identities},
    )

    await TrialHistory.objects.acreate(
        identity_type="telegram",
        identity_hash=TrialHistory.generate_identity_hash(telegram_id),
        trial_plan_name="Welcome Trial",
    )
    return {"success": True, "batches": batches}


@pytest.mark.django_db(transaction=True)
async def test_readme_welcome_trial_once_per_telegram_id(
    make_user: Callable[..., Any], make_product: Callable[..., Any],
    make_offer: Callable[..., Any],
) -> None:
    from billable.models import QuotaBatch, Transaction
    from billable.services import TransactionService

    product = await sync_to_async(make_product)("PREDICTIONS")
    await sync_to_async(make_offer)("OFF_WELCOME_TRIAL", items=[(product, 3)], price="0")
    first_user = await sync_to_async(make_user)()
    second_user = await sync_to_async(make_user)()

    granted = await claim_welcome_trial(first_user.id, "777000")
    again = await claim_welcome_trial(second_user.id, " 777000 ")  # hash ignores spaces/case

    assert granted["success"] is True
    assert [type(b) for b in granted["batches"]] == [QuotaBatch]
    assert again == {"success": False, "reason": "trial_already_used"}
    assert await TransactionService.aget_balance(first_user.id, "predictions") == 3
    assert await TransactionService.aget_balance(second_user.id, "predictions") == 0
    credit = await Transaction.objects.aget(user_id=first_user.id)
    assert credit.action_type == "welcome_bonus"
    assert credit.metadata["identities"] == {"telegram": "777000"}


def test_root_package_does_not_import_models() -> None:
    """The README's import policy: ``import billable`` must not touch the app registry."""
    code = (
        "import sys, billable; "
        "assert 'billable.models' not in sys.modules, 'models imported'; "
        "print(billable.__version__)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0.3.0"


# -- URL mounting ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("urlconf", ["tests.urls", "tests.examples.urls_api_mount"])
def test_api_mounts_with_include_and_with_api_urls(urlconf: str, pdf_export_pack: Any) -> None:
    with override_settings(ROOT_URLCONF=urlconf):
        client = Client()
        refused = client.get(f"{BASE}/catalog")
        listed = client.get(f"{BASE}/catalog", **auth())

    assert refused.status_code == 401
    assert refused.json() == {"detail": "Unauthorized"}
    assert listed.status_code == 200
    assert [offer["sku"] for offer in listed.json()] == ["OFF_PDF_PACK"]


# -- REST flows --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_readme_purchase_flow_identify_order_confirm_wallet(pdf_export_pack: Any) -> None:
    client = Client()
    who = {"provider": "telegram", "external_id": "5550001"}

    identified = post(client, "/identify", {**who, "profile": {"username": "alice"}})
    assert identified.status_code == 200
    user_id = identified.json()["user_id"]
    assert identified.json()["created_user"] is True

    order = post(client, "/orders", {**who, "items": [{"sku": "off_pdf_pack", "quantity": 2}]})
    assert order.status_code == 200, order.content
    assert order.json()["user_id"] == user_id
    assert order.json()["status"] == "pending"
    assert order.json()["total_amount"] == "9.98"

    confirmed = post(client, f"/orders/{order.json()['id']}/confirm",
                     {"payment_id": "charge-1", "payment_method": "telegram_payments"})
    assert confirmed.status_code == 200, confirmed.content
    assert confirmed.json()["message"] == "Order paid and products activated"
    assert confirmed.json()["data"]["status"] == "paid"

    wallet = client.get(f"{BASE}/wallet", {"external_id": "5550001", "provider": "telegram"},
                        **auth())
    assert wallet.status_code == 200
    assert wallet.json() == {"user_id": user_id, "balances": {"PDF_EXPORT": 6}}


@pytest.mark.django_db
def test_readme_exchange_flow(make_product: Callable[..., Any],
                              make_offer: Callable[..., Any]) -> None:
    from billable.services import TransactionService

    coins = make_product("COINS", is_currency=True)
    predictions = make_product("PREDICTIONS")
    make_offer("OFF_COINS_10", items=[(coins, 10)], price="0")
    make_offer("OFF_PREDICTION", items=[(predictions, 1)], price="3", currency="COINS")
    client = Client()
    user_id = post(client, "/identify", {"external_id": "n8n-1"}).json()["user_id"]
    from billable.models import Offer

    TransactionService.grant_offer(user_id, Offer.objects.get(sku="off_coins_10"))

    exchanged = post(client, "/exchange", {"user_id": user_id, "sku": "off_prediction"})

    assert exchanged.status_code == 200, exchanged.content
    assert exchanged.json()["message"] == "Exchange successful"
    assert exchanged.json()["data"]["metadata"]["price"] == 3
    wallet = client.get(f"{BASE}/wallet", {"user_id": user_id}, **auth()).json()
    assert wallet["balances"] == {"COINS": 7, "PREDICTIONS": 1}


@pytest.mark.django_db
def test_readme_catalog_bulk_lookup_keeps_order_and_single_lookup(
    make_product: Callable[..., Any], make_offer: Callable[..., Any]
) -> None:
    product = make_product("CREDITS")
    for sku in ("OFF_A", "OFF_B", "OFF_C"):
        make_offer(sku, items=[(product, 1)], price="1.50")
    client = Client()

    bulk = client.get(f"{BASE}/catalog", {"sku": ["off_c", "OFF_A"]}, **auth())
    single = client.get(f"{BASE}/catalog/off_b", **auth())
    missing = client.get(f"{BASE}/catalog/nope", **auth())

    assert [o["sku"] for o in bulk.json()] == ["OFF_C", "OFF_A"]
    assert single.status_code == 200 and single.json()["price"] == "1.50"
    assert single.json()["items"][0]["product"]["product_key"] == "CREDITS"
    assert missing.status_code == 404
    assert missing.json()["message"] == "Offer not found"


@pytest.mark.django_db
def test_readme_migrate_identities_command(make_user: Callable[..., Any]) -> None:
    """``python manage.py migrate_identities <field> <provider>``, as the 0.2 README shows."""
    from io import StringIO

    from django.core.management import call_command

    from billable.models import ExternalIdentity

    alice, bob = make_user(username="alice"), make_user(username="bob")
    out = StringIO()
    call_command("migrate_identities", "username", "legacy", stdout=out)
    call_command("migrate_identities", "username", "legacy", stdout=out)  # idempotent

    assert ExternalIdentity.get_user_by_identity("alice", provider="legacy") == alice
    assert ExternalIdentity.get_user_by_identity("bob", provider="legacy") == bob
    assert "Done. Created: 2, skipped (already exist): 0." in out.getvalue()
    assert "Done. Created: 0, skipped (already exist): 2." in out.getvalue()
