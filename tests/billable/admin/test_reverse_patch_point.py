"""``billable.admin.reverse`` is the name the CSV import view resolves its redirect through.

Code and tests written for billable 0.2 replace that name (``patch("billable.admin.reverse")``)
to drive the import view in projects whose URLconf has no admin. The view must look the name up
when it runs, not keep its own copy from import time.
"""

from __future__ import annotations

import csv
import io
from unittest.mock import patch

import pytest
from django.contrib.admin.sites import AdminSite
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory, override_settings

from billable.admin import OFFER_CSV_HEADERS, PRODUCT_IMPORT_EXPORT_FIELDS, OfferAdmin, ProductAdmin
from billable.models import Offer, Product

pytestmark = pytest.mark.django_db


def _silent(admin_class, model):
    instance = admin_class(model, AdminSite())
    instance.message_user = lambda *args, **kwargs: None
    return instance


def _csv_request(headers, rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=headers)
    writer.writeheader()
    writer.writerows(rows)
    request = RequestFactory().post("/import/", data={})
    request.FILES["csv_file"] = SimpleUploadedFile("c.csv", buffer.getvalue().encode(),
                                                   content_type="text/csv")
    return request


def test_a_patched_reverse_decides_where_the_import_redirects():
    request = _csv_request(PRODUCT_IMPORT_EXPORT_FIELDS, [{
        "product_key": "patched_key", "name": "Patched", "description": "",
        "product_type": "quantity", "is_active": "true", "is_currency": "false",
        "created_at": "", "metadata": "{}",
    }])
    with patch("billable.admin.reverse", return_value="/somewhere/else/") as fake:
        response = _silent(ProductAdmin, Product).import_products_view(request)
    assert response.status_code == 302
    assert response.url == "/somewhere/else/"
    fake.assert_called_once_with("admin:billable_product_changelist")
    assert Product.objects.filter(product_key="PATCHED_KEY").exists()


@override_settings(ROOT_URLCONF="billable.urls")
def test_import_works_without_admin_urls_when_reverse_is_patched():
    request = _csv_request(OFFER_CSV_HEADERS, [{
        "sku": "no_admin_urls", "name": "Offer", "price": "3", "currency": "USD", "image": "",
        "description": "", "is_active": "true", "created_at": "", "metadata": "{}",
        "product_key": "", "quantity": "", "period_unit": "", "period_value": "",
    }])
    with patch("billable.admin.reverse",
               side_effect=lambda name, **kw: "/form/" if "import" in name else "/list/"):
        response = _silent(OfferAdmin, Offer).import_offers_view(request)
    assert response.url == "/list/"
    assert Offer.objects.get(sku="NO_ADMIN_URLS").price == 3
