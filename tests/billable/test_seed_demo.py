"""billable_seed_demo: loads the demo catalog idempotently and prints the SKUs."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from billable.models import Offer, OfferItem, Product

pytestmark = pytest.mark.django_db

SKUS = ["OFF_WELCOME_TRIAL", "STARS_PACK_S", "STARS_PACK_M", "EXCHANGE_PREDICT_10",
        "PREMIUM_MONTH"]


def _seed() -> str:
    out = StringIO()
    call_command("billable_seed_demo", stdout=out)
    return out.getvalue()


def test_seed_creates_the_demo_catalog_and_prints_skus():
    out = _seed()
    for sku in SKUS:
        assert sku in out
    assert set(Product.objects.values_list("product_key", flat=True)) == {
        "CREDITS", "PREDICTIONS", "PREMIUM"}
    assert Product.objects.get(product_key="credits").is_currency is True
    assert Product.objects.get(product_key="PREMIUM").product_type == "period"
    trial = Offer.objects.get(sku="off_welcome_trial")
    assert trial.price == Decimal("0")
    assert [(i.product.product_key, i.quantity) for i in trial.items.all()] == [
        ("PREDICTIONS", 3)]
    exchange = Offer.objects.get(sku="EXCHANGE_PREDICT_10")
    assert exchange.currency == "CREDITS"
    premium = Offer.objects.get(sku="PREMIUM_MONTH").items.get()
    assert (premium.period_unit, premium.period_value) == ("days", 30)
    assert Offer.objects.get(sku="STARS_PACK_S").currency == "XTR"


def test_seed_is_idempotent_and_repairs_edits():
    _seed()
    Offer.objects.filter(sku="STARS_PACK_S").update(price=Decimal("1"), is_active=False)
    _seed()
    assert Offer.objects.count() == len(SKUS)
    assert Product.objects.count() == 3
    assert OfferItem.objects.count() == len(SKUS)
    pack = Offer.objects.get(sku="STARS_PACK_S")
    assert (pack.price, pack.is_active) == (Decimal("50"), True)
