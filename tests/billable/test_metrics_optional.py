"""Without prometheus-client (the ``metrics`` extra) the kit runs unchanged.

A fresh interpreter where ``import prometheus_client`` fails: migrate, pay an order, consume,
call the API and the metrics endpoint (``501``), run the expiry command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import backend_independent

#: Its own in-memory SQLite database in a subprocess: runs once, in the SQLite session.
pytestmark = backend_independent

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
sys.modules["prometheus_client"] = None  # "import prometheus_client" now raises ImportError
import django
django.setup()
from django.core.management import call_command
from django.test import Client
from billable import metrics
from billable.models import Offer, OfferItem, Product
from billable.services import OrderService, TransactionService
from billable.services.api_keys import create_api_key
from django.contrib.auth import get_user_model

assert not metrics.enabled()
call_command("migrate", verbosity=0)
credits = Product.objects.create(product_key="CREDITS", name="Credits")
offer = Offer.objects.create(sku="PACK", name="Pack", price="5", currency="USD")
OfferItem.objects.create(offer=offer, product=credits, quantity=10)
user = get_user_model().objects.create(username="u")
order = OrderService.create_order(user.pk, [{"sku": "PACK", "quantity": 1}])
OrderService.process_payment(order.pk, payment_id="p1", payment_method="card")
assert TransactionService.consume_quota(user.pk, "CREDITS", amount=2)["success"]
_, key = create_api_key("k", ["admin"])
client = Client(headers={"Authorization": "Bearer " + key})
assert client.get("/api/v1/billing/wallet", {"user_id": user.pk}).json()["balances"] == {
    "CREDITS": 8}
assert client.get("/metrics").status_code == 501
call_command("billable_expire", verbosity=0)
print("still works")
"""


def test_the_kit_runs_without_prometheus_client() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": "",
           "PYTHONPATH": str(ROOT)}
    env.pop("BILLABLE_TEST_DB_NAME", None)
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("still works")
