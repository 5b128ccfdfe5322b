"""Smoke checks of the catalog models: CAPS normalisation and the shared namespace."""

import pytest
from django.core.exceptions import ValidationError

from billable.models import Offer, Product

pytestmark = pytest.mark.django_db


def test_offer_lookup_ignores_case(make_offer):
    make_offer("OFF_WELCOME_TRIAL")
    assert Offer.objects.get(sku="off_welcome_trial").sku == "OFF_WELCOME_TRIAL"
    assert Offer.objects.filter(sku__in=["off_welcome_trial"]).count() == 1


def test_product_key_cannot_reuse_an_offer_sku(make_offer):
    make_offer("GOLD_100")
    with pytest.raises(ValidationError) as info:
        Product.objects.create(product_key="gold_100", name="Gold")
    assert info.value.message_dict["product_key"] == [
        "Conflict: 'GOLD_100' is already used as an Offer SKU."
    ]
