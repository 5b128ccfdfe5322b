"""Peer acceptance suite: the published 0.2 README's service-layer snippets executed verbatim
(the exact text but trailing blanks, run with ``exec``); SPEC §9's idempotency lookup cost; the
shared key/SKU namespace under real concurrency. The other §9 races (double spend, one payment
id for two orders, crossed merges) are proven by ``test_ledger_concurrency``,
``test_orders_concurrency`` and ``test_customers_concurrency``.

Written from the contract only (see ``peer_support``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from billable.services import TransactionService

# -- the README's snippets, character for character ----------------------------------------------

IMPORT_POLICY = '''
# Correct
from billable.models import Product, ExternalIdentity
from billable.services import TransactionService

# Incorrect - will cause AppRegistryNotReady
# from billable import Product, TransactionService
'''

URLS = '''
from django.urls import path, include

urlpatterns = [
    # Mounts the API at /api/v1/billing/
    path("api/v1/billing/", include("billable.urls")),
]
'''

CHECKING_QUOTA = '''
from billable.services import TransactionService

async def generate_pdf_report(user):
    # Check if user has the technical resource "pdf_export" available
    result = await TransactionService.acheck_quota(user.id, "pdf_export")

    if not result["can_use"]:
        raise PermissionError(f"Upgrade required: {result['message']}")

    # Your logic here...
    print("Generating PDF...")

    # Consume 1 unit of quota (Atomic & Idempotent)
    await TransactionService.aconsume_quota(
        user_id=user.id,
        product_key="pdf_export",
        idempotency_key=f"report_{report_id}"
    )
'''

CUSTOM_ORDER = '''
from billable.services import OrderService

order = await OrderService.acreate_order(
    user_id=request.user.id,
    items=[
        {"sku": "off_premium_pack", "quantity": 1}
    ],
    metadata={"source": "web_checkout"}
)
'''

WELCOME_TRIAL = '''
from billable.models import Offer, TrialHistory
from billable.services import TransactionService
from asgiref.sync import sync_to_async

async def claim_welcome_trial(user_id: int, telegram_id: str):
    """Example: Grant welcome trial with fraud prevention."""

    # 1. Check eligibility using TrialHistory
    identities = {"telegram": telegram_id}
    if await TrialHistory.ahas_used_trial(identities=identities):
        return {"success": False, "reason": "trial_already_used"}

    # 2. Find the trial offer (create an Offer with sku="off_welcome_trial" in your DB)
    offer = await Offer.objects.aget(sku="off_welcome_trial")

    # 3. Grant the offer using TransactionService
    batches = await sync_to_async(TransactionService.grant_offer)(
        user_id=user_id,
        offer=offer,
        source="welcome_bonus",
        metadata={"identities": identities}
    )

    # 4. Mark trial as used
    await TrialHistory.objects.acreate(
        identity_type="telegram",
        identity_hash=TrialHistory.generate_identity_hash(telegram_id),
        trial_plan_name="Welcome Trial"
    )

    return {"success": True, "batches": batches}
'''


def run_snippet(code: str, **names: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = dict(names)
    exec(compile(code, "<README>", "exec"), namespace)
    return namespace


def run_top_level_await(code: str, **names: Any) -> dict[str, Any]:
    """Run a snippet written with top-level ``await`` (as in a notebook or an async view)."""
    body = "\n".join("    " + line for line in code.strip().splitlines())
    namespace = run_snippet(f"async def _snippet():\n{body}\n    return locals()\n", **names)
    return async_to_sync(namespace["_snippet"])()


@pytest.mark.django_db
def test_readme_import_policy_and_urls_run_as_written() -> None:
    namespace = run_snippet(IMPORT_POLICY)
    assert namespace["TransactionService"] is TransactionService
    [pattern] = run_snippet(URLS)["urlpatterns"]
    assert str(pattern.pattern) == "api/v1/billing/"


@pytest.mark.django_db
def test_readme_checking_quota_runs_as_written(user, make_product, make_offer,
                                               capsys) -> None:
    make_offer("OFF_PDF", items=[(make_product("PDF_EXPORT", name="PDF export"), 2)])
    report = run_snippet(CHECKING_QUOTA, report_id=7)["generate_pdf_report"]
    with pytest.raises(PermissionError, match="Upgrade required: No active quota for PDF_EXPORT"):
        async_to_sync(report)(user)
    TransactionService.grant_offer(user.id, "off_pdf")
    async_to_sync(report)(user)
    async_to_sync(report)(user)  # same report_id: idempotent, charged once
    assert capsys.readouterr().out.count("Generating PDF...") == 2
    assert TransactionService.get_balance(user.id, "pdf_export") == 1


@pytest.mark.django_db
def test_readme_custom_order_runs_as_written(user, make_product, make_offer) -> None:
    class Request:
        pass

    request = Request()
    request.user = user  # type: ignore[attr-defined]
    make_offer("OFF_PREMIUM_PACK", items=[(make_product("PREMIUM"), 1)], price="9.99")
    order = run_top_level_await(CUSTOM_ORDER, request=request)["order"]
    assert order.status == "pending" and order.total_amount == Decimal("9.99")
    assert order.metadata["source"] == "web_checkout"


@pytest.mark.django_db
def test_readme_welcome_trial_runs_as_written(user, make_product, make_offer) -> None:
    make_offer("OFF_WELCOME_TRIAL", items=[(make_product("WELCOME"), 5)])
    claim = run_snippet(WELCOME_TRIAL)["claim_welcome_trial"]
    first = async_to_sync(claim)(user.id, "12345")
    assert first["success"] is True and len(first["batches"]) == 1
    assert async_to_sync(claim)(user.id, "12345") == {"success": False,
                                                       "reason": "trial_already_used"}
    assert TransactionService.get_balance(user.id, "welcome") == 5


# -- §9: the idempotency lookup does not scan the ledger ------------------------------------------


@pytest.mark.django_db
def test_idempotent_replay_cost_does_not_grow_with_the_ledger(user, make_product,
                                                              make_offer) -> None:
    make_offer("BULK", items=[(make_product("UNITS"), 10_000)])
    TransactionService.grant_offer(user.id, "bulk")
    TransactionService.consume_quota(user.id, "units", idempotency_key="probe")

    def replay_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            result = TransactionService.consume_quota(user.id, "units", idempotency_key="probe")
        assert "idempotent" in result["message"]
        return len(queries)

    small = replay_queries()
    for n in range(200):
        TransactionService.consume_quota(user.id, "units", idempotency_key=f"k{n}")
    assert replay_queries() == small


# -- §9 under real concurrency (PostgreSQL) --------------------------------------------------------


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; results or exceptions."""
    gate = threading.Barrier(count)
    results: list[Any] = [None] * count

    def runner(i: int) -> None:
        try:
            gate.wait()
            results[i] = work(i)
        except Exception as exc:  # collected and asserted by the test
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


needs_postgres = pytest.mark.skipif(connection.vendor != "postgresql",
                                    reason="real concurrency needs PostgreSQL")

@needs_postgres
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_shared_namespace_holds_under_concurrent_writes() -> None:
    """A product key and an SKU written at once by two transactions: one of them is refused
    (the check-then-insert used to let both through in 25 of 30 rounds)."""
    from django.core.exceptions import ValidationError

    from billable.models import Offer, Product

    def write(kind: int, key: str) -> Any:
        if kind == 0:
            return Product.objects.create(product_key=key, name="x")
        if kind == 1:
            return Offer.objects.create(sku=key, name="x", price=Decimal("1"))
        return Offer.objects.bulk_create([Offer(sku=key, name="y", price=Decimal("1"))])

    for i in range(15):
        key = f"RACE_{i}"
        kinds = (0, 1 + i % 2)
        results = in_threads(2, lambda n, key=key, kinds=kinds: write(kinds[n], key))
        assert sum(isinstance(r, ValidationError) for r in results) == 1, results
        assert Product.objects.filter(product_key=key).exists() != \
            Offer.objects.filter(sku=key).exists()
