"""CSV export/import of products and offers: the service functions and the admin views."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from billable.models import Offer, OfferItem, Product
from billable.services.catalog_io import (
    OFFER_CSV_HEADERS,
    PRODUCT_CSV_FIELDS,
    export_offers_csv,
    export_products_csv,
    import_offers_csv,
    import_products_csv,
)

pytestmark = pytest.mark.django_db


def _csv(headers, rows) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=headers)
    writer.writeheader()
    for row in rows:
        writer.writerow({name: row.get(name, "") for name in headers})
    return buffer.getvalue().encode()


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# -- products ----------------------------------------------------------------------------------


def test_products_round_trip_export_then_import(make_product):
    make_product("CREDITS", name="Credits", description="Line 1\nLine 2, \"quoted\"",
                 metadata={"tier": "gold", "n": 1}, is_currency=True)
    make_product("VIP", name="VIP", product_type="period", is_active=False)
    exported = export_products_csv()
    Product.objects.all().delete()

    result = import_products_csv(exported.encode())

    assert (result.created, result.updated, result.errors) == (2, 0, [])
    credits = Product.objects.get(product_key="credits")
    assert credits.description == "Line 1\nLine 2, \"quoted\""
    assert credits.metadata == {"tier": "gold", "n": 1} and credits.is_currency
    vip = Product.objects.get(product_key="VIP")
    assert (vip.product_type, vip.is_active) == ("period", False)
    assert export_products_csv() == exported


def test_product_import_matches_keys_in_any_case_and_stores_caps(make_product):
    make_product("CREDITS", name="Old")
    data = _csv(PRODUCT_CSV_FIELDS, [
        {"product_key": "credits", "name": "New", "product_type": "QUANTITY"},
        {"product_key": "new_one", "name": "Fresh", "product_type": "unlimited"},
    ])
    result = import_products_csv(data)
    assert (result.created, result.updated) == (1, 1)
    assert Product.objects.get(product_key="CREDITS").name == "New"
    assert Product.objects.filter(product_key="NEW_ONE").values_list(
        "product_key", flat=True).get() == "NEW_ONE"


def test_product_key_used_as_sku_is_reported_not_imported(make_offer):
    make_offer("GOLD_100")
    data = _csv(PRODUCT_CSV_FIELDS, [
        {"product_key": "gold_100", "name": "Gold"},
        {"product_key": "silver", "name": "Silver"},
    ])
    result = import_products_csv(data)
    assert result.errors == [
        "Row 2: product_key: Conflict: 'GOLD_100' is already used as an Offer SKU."
    ]
    assert not Product.objects.filter(product_key="GOLD_100").exists()
    assert Product.objects.filter(product_key="SILVER").exists()


@pytest.mark.parametrize(("row", "message"), [
    ({"product_key": "X", "name": "X", "product_type": "weird"}, "invalid product_type"),
    ({"product_key": "X", "name": "X", "metadata": "not json"}, "invalid metadata JSON"),
    ({"product_key": "X", "name": "X", "metadata": "[1, 2]"}, "must be an object"),
    ({"product_key": "X", "name": "X", "is_active": "maybe"}, "invalid is_active"),
    ({"product_key": "X", "name": "X", "created_at": "yesterday"}, "invalid created_at"),
    ({"product_key": "", "name": "X"}, "product_key is required"),
    ({"product_key": "X", "name": ""}, "name is required"),
    ({"product_key": "X", "name": "N" * 101}, "name:"),
])
def test_invalid_product_rows_are_reported_and_skipped(row, message):
    result = import_products_csv(_csv(PRODUCT_CSV_FIELDS, [row]))
    assert len(result.errors) == 1 and message in result.errors[0]
    assert result.errors[0].startswith("Row 2:")
    assert not Product.objects.exists()


def test_strict_product_import_is_all_or_nothing():
    data = _csv(PRODUCT_CSV_FIELDS, [
        {"product_key": "GOOD", "name": "Good"},
        {"product_key": "BAD", "name": "Bad", "product_type": "weird"},
    ])
    result = import_products_csv(data, strict=True)
    assert not result.applied and result.created == 0
    assert "nothing was imported" in result.summary()
    assert not Product.objects.exists()


def test_duplicate_keys_in_one_file_are_reported():
    data = _csv(PRODUCT_CSV_FIELDS, [
        {"product_key": "DUP", "name": "First"}, {"product_key": "dup", "name": "Second"},
    ])
    result = import_products_csv(data)
    assert result.created == 1 and "duplicate product_key DUP" in result.errors[0]
    assert Product.objects.get(product_key="DUP").name == "First"


@pytest.mark.parametrize("payload", [b"product_key,name\nX,Y\n", b"", b"\xff\xfe\x00bad",
                                     b'product_key,name,"unterminated\n'])
def test_bad_files_are_refused_whole(payload):
    result = import_products_csv(payload)
    assert result.header_error and not result.applied
    assert not Product.objects.exists()


def test_naive_and_aware_created_at_are_honoured():
    data = _csv(PRODUCT_CSV_FIELDS, [
        {"product_key": "A", "name": "A", "created_at": "2025-01-02T03:04:05"},
        {"product_key": "B", "name": "B", "created_at": "2025-01-02T03:04:05+02:00"},
    ])
    assert import_products_csv(data).errors == []
    assert Product.objects.get(product_key="A").created_at.isoformat().startswith("2025-01-02T03")
    assert Product.objects.get(product_key="B").created_at.hour == 1


# -- offers ------------------------------------------------------------------------------------


def test_offers_round_trip_export_then_import(make_product, make_offer):
    credits = make_product("CREDITS")
    vip = make_product("VIP", product_type="period")
    make_offer("BUNDLE", items=[(credits, 100), (vip, 1, "months", 3)], price="33.33",
               currency="EUR", metadata={"r": 1}, image="https://cdn.example/b.png")
    make_offer("EMPTY", price="0")
    exported = export_offers_csv()
    Offer.objects.all().delete()

    result = import_offers_csv(exported)

    assert (result.created, result.updated, result.errors) == (2, 0, [])
    bundle = Offer.objects.get(sku="bundle")
    assert (bundle.price, bundle.currency, bundle.metadata) == (Decimal("33.33"), "EUR",
                                                                {"r": 1})
    assert bundle.image == "https://cdn.example/b.png"
    items = {i.product.product_key: i for i in bundle.items.select_related("product")}
    assert items["CREDITS"].quantity == 100 and items["CREDITS"].period_unit == "forever"
    assert (items["VIP"].period_unit, items["VIP"].period_value) == ("months", 3)
    assert not Offer.objects.get(sku="EMPTY").items.exists()
    assert export_offers_csv() == exported


def test_offer_rows_are_grouped_by_sku_in_any_case(make_product):
    make_product("P1")
    make_product("P2")
    data = _csv(OFFER_CSV_HEADERS, [
        {"sku": "combo", "name": "Combo", "price": "5", "product_key": "p1", "quantity": "2"},
        {"sku": "COMBO", "name": "ignored", "price": "99", "product_key": "P2",
         "period_unit": "days", "period_value": "7"},
    ])
    result = import_offers_csv(data)
    assert (result.created, result.errors, result.links_overwritten) == (1, [], ["COMBO"])
    offer = Offer.objects.get(sku="COMBO")
    assert (offer.name, offer.price) == ("Combo", Decimal("5"))
    assert offer.items.count() == 2


def test_offer_sku_used_as_product_key_is_reported(make_product):
    make_product("GOLD")
    result = import_offers_csv(_csv(OFFER_CSV_HEADERS, [{"sku": "gold", "name": "G",
                                                         "price": "1"}]))
    assert result.errors == [
        "Offer GOLD (row 2): sku: Conflict: 'GOLD' is already used as a Product Key."
    ]
    assert not Offer.objects.exists()


def test_rows_without_products_keep_existing_items(make_product, make_offer):
    offer = make_offer("KEEP", items=[(make_product("P"), 3, "years", 1)], price="5")
    data = _csv(OFFER_CSV_HEADERS, [{"sku": "keep", "name": "Renamed", "price": "20"}])
    result = import_offers_csv(data)
    assert (result.updated, result.links_overwritten) == (1, [])
    offer.refresh_from_db()
    assert offer.name == "Renamed" and offer.items.get().quantity == 3


@pytest.mark.parametrize(("row", "message"), [
    ({"product_key": "MISSING"}, "product 'MISSING' not found; item of offer OFF skipped"),
    ({"product_key": "P", "quantity": "0"}, "invalid quantity"),
    ({"product_key": "P", "period_unit": "weeks"}, "invalid period_unit"),
    ({"product_key": "P", "period_unit": "days"}, "period_value is required"),
])
def test_bad_item_rows_are_skipped_but_the_offer_is_kept(make_product, row, message):
    make_product("P")
    result = import_offers_csv(_csv(OFFER_CSV_HEADERS, [
        {"sku": "OFF", "name": "Off", "price": "1", "product_key": "P", "quantity": "4"},
        {"sku": "OFF", "name": "Off", "price": "1", **row},
    ]))
    assert len(result.errors) == 1 and result.errors[0].startswith(f"Row 3: {message}")
    assert Offer.objects.get(sku="OFF").items.get().quantity == 4


@pytest.mark.parametrize(("row", "message"), [
    ({"price": ""}, "price is required"),
    ({"price": "-1"}, "invalid price"),
    ({"price": "NaN"}, "invalid price"),
    ({"price": "1.5", "currency": "xtr"}, "whole numbers"),
    ({"price": "1", "metadata": "{"}, "invalid metadata JSON"),
    ({"price": "1", "image": "not a url"}, "image:"),
])
def test_invalid_offers_are_reported_and_skipped(row, message):
    result = import_offers_csv(_csv(OFFER_CSV_HEADERS, [{"sku": "BAD", "name": "B", **row}]))
    assert len(result.errors) == 1 and message in result.errors[0]
    assert not Offer.objects.exists()


def test_strict_offer_import_rolls_back_everything(make_product):
    make_product("P")
    data = _csv(OFFER_CSV_HEADERS, [
        {"sku": "GOOD", "name": "G", "price": "1", "product_key": "P"},
        {"sku": "BAD", "name": "B", "price": "1", "product_key": "NOPE"},
    ])
    result = import_offers_csv(data, strict=True)
    assert not result.applied and result.links_overwritten == []
    assert not Offer.objects.exists() and not OfferItem.objects.exists()


# -- admin views -------------------------------------------------------------------------------


def test_admin_export_button_and_action_download_csv(admin_client, make_product):
    first = make_product("A")
    make_product("B")
    response = admin_client.get(reverse("admin:billable_product_export"))
    assert response["Content-Type"] == "text/csv"
    assert 'filename="products_export.csv"' in response["Content-Disposition"]
    assert {r["product_key"] for r in _rows(response.content.decode())} == {"A", "B"}
    action = admin_client.post(reverse("admin:billable_product_changelist"), {
        "action": "export_products_csv", "_selected_action": [first.pk]})
    assert [r["product_key"] for r in _rows(action.content.decode())] == ["A"]


def test_admin_import_form_renders_and_upload_reports(admin_client, make_offer):
    make_offer("TAKEN")
    url = reverse("admin:billable_product_import")
    assert admin_client.get(url).status_code == 200
    upload = SimpleUploadedFile("p.csv", _csv(PRODUCT_CSV_FIELDS, [
        {"product_key": "taken", "name": "T"}, {"product_key": "ok", "name": "Ok"}]))
    response = admin_client.post(url, {"csv_file": upload}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:billable_product_changelist")
    texts = [str(m) for m in response.context["messages"]]
    assert any("Conflict: 'TAKEN' is already used as an Offer SKU." in t for t in texts)
    assert any("Import finished: 1 created, 0 updated." in t for t in texts)


def test_admin_import_with_wrong_headers_returns_to_the_form(admin_client):
    url = reverse("admin:billable_offer_import")
    upload = SimpleUploadedFile("o.csv", b"sku,name\nX,Y\n")
    response = admin_client.post(url, {"csv_file": upload})
    assert response.status_code == 302 and response.url == url
    assert not Offer.objects.exists()


def test_admin_strict_checkbox_imports_nothing_on_error(admin_client):
    upload = SimpleUploadedFile("o.csv", _csv(OFFER_CSV_HEADERS, [
        {"sku": "GOOD", "name": "G", "price": "1"}, {"sku": "BAD", "name": "B", "price": ""}]))
    admin_client.post(reverse("admin:billable_offer_import"),
                      {"csv_file": upload, "strict": "1"})
    assert not Offer.objects.exists()


def test_empty_typed_cells_keep_current_values(make_product, make_offer):
    make_product("VIP", name="Vip", product_type="quantity", is_active=False, is_currency=True)
    make_offer("PACK", price="5", currency="EUR", is_active=False)
    import_products_csv(_csv(PRODUCT_CSV_FIELDS, [{"product_key": "vip", "name": ""}]))
    import_offers_csv(_csv(OFFER_CSV_HEADERS, [{"sku": "pack", "price": "6"}]))
    vip = Product.objects.get(product_key="VIP")
    assert (vip.name, vip.product_type, vip.is_active, vip.is_currency) == (
        "Vip", "quantity", False, True)
    pack = Offer.objects.get(sku="PACK")
    assert (pack.price, pack.currency, pack.is_active) == (Decimal("6"), "EUR", False)


def test_new_offer_without_currency_uses_the_setting(settings):
    settings.BILLABLE_CURRENCY = "XTR"
    result = import_offers_csv(_csv(OFFER_CSV_HEADERS, [{"sku": "S", "name": "S",
                                                         "price": "3"}]))
    assert result.errors == []
    assert Offer.objects.get(sku="S").currency == "XTR"


def test_import_needs_add_and_change_permission_export_needs_view(client, django_user_model):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user(username="viewer", password="pw",
                                                  is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_product"))
    client.force_login(staff)
    assert client.get(reverse("admin:billable_product_export")).status_code == 200
    upload = SimpleUploadedFile("p.csv", _csv(PRODUCT_CSV_FIELDS, [{"product_key": "X",
                                                                    "name": "X"}]))
    url = reverse("admin:billable_product_import")
    assert client.post(url, {"csv_file": upload}).status_code == 403
    assert client.get(reverse("admin:billable_offer_export")).status_code == 403
    assert not Product.objects.exists()


def test_changelists_offer_export_and_import_buttons(admin_client):
    for name in ("product", "offer"):
        page = admin_client.get(reverse(f"admin:billable_{name}_changelist")).content.decode()
        assert reverse(f"admin:billable_{name}_export") in page
        assert reverse(f"admin:billable_{name}_import") in page
