"""CSV import never stores a row that breaks later reads, never answers 500, and is bounded;
CSV export escapes spreadsheet formulas and the import strips the escape (lossless round trip).
"""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from billable.models import Offer, Product
from billable.services.catalog_io import (
    OFFER_CSV_HEADERS,
    PRODUCT_CSV_FIELDS,
    export_offers_csv,
    export_products_csv,
    import_offers_csv,
    import_products_csv,
)

pytestmark = pytest.mark.django_db
TOKEN = {"Authorization": "Bearer test-token-0123456789abcdef"}


def _csv(headers, rows) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=headers)
    writer.writeheader()
    for row in rows:
        writer.writerow({name: row.get(name, "") for name in headers})
    return buffer.getvalue().encode()


BAD_PRODUCT_ROWS = {
    "year 0 in UTC": {"created_at": "0001-01-01T00:00:00+05:00"},
    "year 10000 in UTC": {"created_at": "9999-12-31T23:00:00-05:00"},
    "NUL in a cell": {"name": "Gold\x00bar"},
    "NaN in metadata": {"metadata": '{"ratio": NaN}'},
    "Infinity in metadata": {"metadata": '{"ratio": Infinity}'},
    "NUL in metadata": {"metadata": '{"note": "a\\u0000b"}'},
    "deeply nested metadata": {"metadata": '{"a":' * 10_000 + "1" + "}" * 10_000},
    "huge number in metadata": {"metadata": '{"n": ' + "9" * 5000 + "}"},
}


@pytest.mark.parametrize("case", sorted(BAD_PRODUCT_ROWS))
def test_a_bad_product_row_is_reported_and_nothing_breaks_later(admin_client, case):
    row = {"product_key": "GOLD", "name": "Gold", **BAD_PRODUCT_ROWS[case]}
    upload = SimpleUploadedFile("p.csv", _csv(PRODUCT_CSV_FIELDS, [
        row, {"product_key": "FINE", "name": "Fine"}]))
    response = admin_client.post(reverse("admin:billable_product_import"),
                                 {"csv_file": upload}, follow=True)
    assert response.status_code == 200
    texts = [str(m) for m in response.context["messages"]]
    assert any(t.startswith("Row 2:") for t in texts), texts
    assert list(Product.objects.values_list("product_key", flat=True)) == ["FINE"]
    assert Client().get("/api/v1/billing/products", headers=TOKEN).status_code == 200
    assert admin_client.get(reverse("admin:billable_product_changelist")).status_code == 200


@pytest.mark.parametrize("cells", [
    {"created_at": "0001-01-01T00:00:00+05:00"},
    {"description": "a\x00b"},
    {"metadata": '{"x": NaN}'},
    {"price": "9.999"},
])
def test_a_bad_offer_row_is_reported(cells):
    result = import_offers_csv(_csv(OFFER_CSV_HEADERS, [
        {"sku": "PACK", "name": "Pack", "price": "1", **cells}]))
    assert len(result.errors) == 1 and result.errors[0].startswith("Offer PACK (row 2):")
    assert not Offer.objects.exists()


def test_files_above_the_row_cap_are_refused_whole():
    rows = [{"product_key": f"P{n}", "name": "p"} for n in range(6)]
    result = import_products_csv(_csv(PRODUCT_CSV_FIELDS, rows), max_rows=5)
    assert result.header_error and not result.applied
    assert "at most 5" in result.errors[0]
    assert not Product.objects.exists()


def test_an_import_past_its_time_budget_is_rolled_back_and_says_how_far_it_got():
    seen: list[tuple[int, int]] = []
    rows = [{"product_key": f"P{n}", "name": "p"} for n in range(4)]
    result = import_products_csv(_csv(PRODUCT_CSV_FIELDS, rows), max_seconds=0,
                                 progress=lambda done, total: seen.append((done, total)))
    assert not result.applied
    assert result.summary().startswith("Import stopped after 0 s at row 1 of 4")
    assert seen == [(1, 4)]
    assert not Product.objects.exists()


def test_progress_is_reported_for_every_row_and_in_the_admin(admin_client):
    seen: list[tuple[int, int]] = []
    rows = [{"sku": "A", "name": "a", "price": "1"}, {"sku": "B", "name": "b", "price": "1"},
            {"sku": "", "name": "x", "price": "1"}]
    result = import_offers_csv(_csv(OFFER_CSV_HEADERS, rows),
                               progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 3), (3, 3)]
    assert result.progress_line().startswith("Processed 3 of 3 rows in ")
    upload = SimpleUploadedFile("o.csv", _csv(OFFER_CSV_HEADERS, rows))
    response = admin_client.post(reverse("admin:billable_offer_import"), {"csv_file": upload},
                                 follow=True)
    assert any(str(m).startswith("Processed 3 of 3 rows") for m in response.context["messages"])


TRICKY = ["=HYPERLINK(\"http://evil\")", "+1+1", "-2", "@SUM(A1)", "\tTab first",
          "\rCR first", "'quoted", "'=already escaped", "''=twice", "plain", "a=b"]


def test_export_escapes_formulas_and_import_restores_them_exactly(make_product, make_offer):
    for index, text in enumerate(TRICKY):
        make_product(f"P{index}", name=f"n{index}", description=text)
        make_offer(f"O{index}", name=text, description=text, price="1")
    products, offers = export_products_csv(), export_offers_csv()
    for text in (products, offers):
        for row in csv.reader(io.StringIO(text)):
            for value in row:
                assert value[:1] not in {"=", "+", "-", "@", "\t", "\r"}, value
    Product.objects.update(description="changed")
    Offer.objects.update(name="changed", description="changed")
    assert import_products_csv(products.encode()).errors == []
    assert import_offers_csv(offers.encode()).errors == []
    for index, text in enumerate(TRICKY):
        assert Product.objects.get(product_key=f"P{index}").description == text
        offer = Offer.objects.get(sku=f"O{index}")
        assert (offer.name, offer.description) == (text, text)
    assert export_products_csv() == products
