"""The admin surface code written against billable 0.2 relies on (names and call shapes)."""

from __future__ import annotations

import csv
import io
from unittest.mock import patch

import pytest
from django.contrib.admin.sites import AdminSite
from django.contrib.messages import constants
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory

from billable.admin import (
    OFFER_CSV_HEADERS,
    PRODUCT_IMPORT_EXPORT_FIELDS,
    OfferAdmin,
    ProductAdmin,
)
from billable.models import Offer, Product

pytestmark = pytest.mark.django_db


def _admin(admin_class, model, sink):
    instance = admin_class(model, AdminSite())
    instance.message_user = (
        lambda request, message, level=constants.INFO, extra_tags="", fail_silently=False:
        sink.append((str(message), level))
    )
    return instance


def _upload(headers, rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=headers)
    writer.writeheader()
    writer.writerows(rows)
    request = RequestFactory().post("/import/", data={})
    request.FILES["csv_file"] = SimpleUploadedFile("f.csv", buffer.getvalue().encode(),
                                                   content_type="text/csv")
    return request


def test_export_action_with_an_empty_selection_exports_everything(make_product):
    make_product("ONE")
    make_product("TWO")
    product_admin = _admin(ProductAdmin, Product, [])
    response = product_admin.export_products_csv(RequestFactory().get("/"),
                                                 Product.objects.none())
    reader = csv.DictReader(io.StringIO(response.content.decode()))
    assert tuple(reader.fieldnames) == PRODUCT_IMPORT_EXPORT_FIELDS
    assert {row["product_key"] for row in reader} == {"ONE", "TWO"}


def test_import_view_called_directly_with_patched_reverse():
    messages: list = []
    product_admin = _admin(ProductAdmin, Product, messages)
    request = _upload(PRODUCT_IMPORT_EXPORT_FIELDS, [
        {"product_key": "imp_new1", "name": "One", "product_type": "quantity",
         "is_active": "true", "is_currency": "1", "created_at": "", "metadata": "{}",
         "description": ""},
    ])
    with patch("billable.admin.reverse", return_value="/admin/billable/product/"):
        response = product_admin.import_products_view(request)
    assert response.status_code == 302
    assert Product.objects.get(product_key="IMP_NEW1").is_currency is True
    assert ("Import finished: 1 created, 0 updated.", constants.SUCCESS) in messages


def test_offer_import_reports_skipped_products_and_overwritten_links(make_product):
    make_product("EXISTS")
    messages: list = []
    offer_admin = _admin(OfferAdmin, Offer, messages)
    base = {"name": "Offer", "price": "1", "currency": "USD", "image": "", "description": "",
            "is_active": "True", "created_at": "", "metadata": "{}", "period_unit": "",
            "period_value": ""}
    request = _upload(OFFER_CSV_HEADERS, [
        {**base, "sku": "SKIP_OFF", "product_key": "EXISTS", "quantity": "1"},
        {**base, "sku": "SKIP_OFF", "product_key": "MISSING_KEY", "quantity": "2"},
    ])
    offer_admin.import_offers_view(request)
    offer = Offer.objects.get(sku="SKIP_OFF")
    assert offer.items.get().product.product_key == "EXISTS"
    texts = [text for text, _level in messages]
    assert any("MISSING_KEY" in t and "SKIP_OFF" in t and "not found" in t for t in texts)
    assert "Links overwritten for offers: SKIP_OFF." in texts


def test_wrong_headers_send_the_admin_back_to_the_import_form():
    messages: list = []
    offer_admin = _admin(OfferAdmin, Offer, messages)
    request = RequestFactory().post("/import/", data={})
    request.FILES["csv_file"] = SimpleUploadedFile("o.csv", b"sku,name\nX,Y")
    response = offer_admin.import_offers_view(request)
    assert response.status_code == 302 and "import" in response.url
    assert any("CSV must have headers" in text for text, _level in messages)


@pytest.mark.parametrize(("existing", "expected"), [(None, "GET_DIAMONDS"),
                                                    ("GET_DIAMONDS", "GET_DIAMONDS_1")])
def test_save_model_with_offer_data_creates_the_get_offer(make_offer, existing, expected):
    if existing:
        make_offer(existing, price="50")
    product = Product.objects.create(product_key="diamonds", name="Diamonds",
                                     product_type=Product.ProductType.QUANTITY)

    class SubmittedForm:
        cleaned_data = {"offer_price": 100.00, "offer_currency": "usd", "offer_quantity": 50,
                        "offer_period_unit": "forever", "offer_period_value": None}

    product_admin = _admin(ProductAdmin, Product, [])
    product_admin.save_model(RequestFactory().get("/"), product, SubmittedForm(), change=True)
    offer = Offer.objects.get(sku=expected)
    assert (offer.name, offer.price, offer.currency) == ("Diamonds", 100, "USD")
    assert offer.items.get(product=product).quantity == 50
