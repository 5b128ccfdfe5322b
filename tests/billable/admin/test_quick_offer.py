"""Quick "GET_<KEY>" offer creation from the Product change form and the service function."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from billable.exceptions import InvalidAmount, InvalidInput, InvalidPrice
from billable.models import Offer, Product
from billable.services.catalog_io import create_quick_offer
from tests.helpers import requires_postgres, run_in_threads

pytestmark = pytest.mark.django_db


def _product_form(product: Product, **offer_fields: str) -> dict[str, str]:
    data = {
        "product_key": product.product_key or "", "name": product.name,
        "description": product.description, "product_type": product.product_type,
        "is_active": "on", "metadata": "{}", "created_at_0": "2026-01-01",
        "created_at_1": "00:00:00",
        "offer_price": "", "offer_currency": "", "offer_quantity": "1",
        "offer_period_unit": "forever", "offer_period_value": "",
    }
    data.update(offer_fields)
    return data


def test_saving_with_a_price_creates_get_key_then_suffixed_offers(admin_client, make_product):
    product = make_product("CREDITS", name="Credits")
    url = reverse("admin:billable_product_change", args=[product.pk])
    for _ in range(3):
        response = admin_client.post(url, _product_form(product, offer_price="4.99",
                                                        offer_quantity="100"))
        assert response.status_code == 302
    offers = list(Offer.objects.filter(sku__startswith="GET_CREDITS").order_by("pk"))
    assert [o.sku for o in offers] == ["GET_CREDITS", "GET_CREDITS_1", "GET_CREDITS_2"]
    item = offers[0].items.get()
    assert (item.product_id, item.quantity, item.period_unit) == (product.pk, 100, "forever")
    assert offers[0].price == Decimal("4.99")
    assert offers[0].currency == "USD"


def test_saving_without_a_price_creates_no_offer(admin_client, make_product):
    product = make_product("CREDITS")
    url = reverse("admin:billable_product_change", args=[product.pk])
    assert admin_client.post(url, _product_form(product)).status_code == 302
    assert not Offer.objects.exists()


def test_limited_period_needs_a_value_and_nothing_is_saved(admin_client, make_product):
    product = make_product("VIP", product_type="period")
    url = reverse("admin:billable_product_change", args=[product.pk])
    response = admin_client.post(url, _product_form(product, name="Renamed", offer_price="10",
                                                    offer_period_unit="days"))
    assert response.status_code == 200
    assert "offer_period_value" in response.context["adminform"].form.errors
    product.refresh_from_db()
    assert product.name != "Renamed"
    assert not Offer.objects.exists()


def test_fractional_stars_price_is_refused_on_the_form(admin_client, make_product):
    product = make_product("VIP")
    url = reverse("admin:billable_product_change", args=[product.pk])
    response = admin_client.post(url, _product_form(product, offer_price="1.50",
                                                    offer_currency="xtr"))
    assert response.status_code == 200
    assert "offer_price" in response.context["adminform"].form.errors


def test_new_product_and_its_offer_are_created_together(admin_client):
    data = _product_form(Product(product_key="pdf_export", name="PDF export",
                                 product_type="period"),
                         offer_price="0", offer_period_unit="days", offer_period_value="30",
                         offer_currency="xtr")
    assert admin_client.post(reverse("admin:billable_product_add"), data).status_code == 302
    product = Product.objects.get(product_key="pdf_export")
    assert product.product_key == "PDF_EXPORT"
    offer = Offer.objects.get(sku="get_pdf_export")
    assert (offer.price, offer.currency) == (Decimal("0"), "XTR")
    assert offer.items.get().period_value == 30


def test_quick_offer_skips_names_taken_by_a_product_key(make_product):
    product = make_product("GOLD")
    make_product("GET_GOLD")
    assert create_quick_offer(product, "1").sku == "GET_GOLD_1"


def test_quick_offer_truncates_long_keys_to_the_sku_length(make_product):
    product = make_product("K" * 50)
    first = create_quick_offer(product, "1")
    second = create_quick_offer(product, "1")
    assert len(first.sku) == 50 and first.sku.startswith("GET_K")
    assert second.sku.endswith("_1") and len(second.sku) == 50


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"price": "-1"}, InvalidPrice),
    ({"price": "abc"}, InvalidPrice),
    ({"price": "1", "quantity": 0}, InvalidAmount),
    ({"price": "1", "period_unit": "weeks"}, InvalidInput),
    ({"price": "1", "period_unit": "days"}, InvalidAmount),
    ({"price": "1.5", "currency": "XTR"}, InvalidPrice),
])
def test_quick_offer_rejects_bad_values(make_product, kwargs, error):
    product = make_product("CREDITS")
    price = kwargs.pop("price")
    with pytest.raises(error):
        create_quick_offer(product, price, **kwargs)
    assert not Offer.objects.exists()


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_quick_offers_get_distinct_skus(make_product):
    product = make_product("RACE")

    def create(_index: int) -> str:
        return create_quick_offer(Product.objects.get(pk=product.pk), "1").sku

    results = run_in_threads(4, create)
    assert sorted(results) == ["GET_RACE", "GET_RACE_1", "GET_RACE_2", "GET_RACE_3"]
    assert Offer.objects.count() == 4
