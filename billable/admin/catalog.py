"""Catalog admin: products (with the quick-offer fields and a report) and offers.

Both get CSV export (an action and a changelist button) and import (an upload form). The CSV and
quick-offer logic lives in ``billable.services.catalog_io``; these classes only wire it in.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import reverse  # noqa: F401  (kept importable: tests patch ``reverse`` here)
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from billable.admin.csv_tools import CsvAdminMixin
from billable.admin.display import money, whole_stars
from billable.admin.json_field import JSON_FIELD_OVERRIDES
from billable.admin.reports import admin_url, build_product_activity
from billable.conf import billable_settings
from billable.exceptions import BillableError
from billable.models import Offer, OfferItem, Product
from billable.models.catalog import MAX_PERIOD_YEARS, STARS_CURRENCY, span_allowed
from billable.services import catalog_io
from billable.services.catalog_io import ImportResult
from billable.validation import MAX_AMOUNT

FOREVER = OfferItem.PeriodUnit.FOREVER


class ProductAdminForm(forms.ModelForm):
    """Product form plus optional fields that create a ``GET_<KEY>`` offer on save."""

    offer_price = forms.DecimalField(
        required=False, min_value=Decimal("0"), max_digits=20, decimal_places=2,
        label="New offer: price",
        help_text="Fill in to create an offer GET_<KEY> selling this product (0 = free). "
                  "Leave empty to only edit the product.",
    )
    offer_currency = forms.CharField(
        required=False, max_length=50, label="Currency",
        help_text="ISO code, XTR (Telegram Stars) or a currency product key; "
                  "defaults to BILLABLE_CURRENCY.",
    )
    offer_quantity = forms.IntegerField(required=False, min_value=1, max_value=MAX_AMOUNT,
                                        initial=1, label="Units per purchase")
    offer_period_unit = forms.ChoiceField(required=False, choices=OfferItem.PeriodUnit.choices,
                                          initial=FOREVER, label="Period unit")
    offer_period_value = forms.IntegerField(required=False, min_value=1, label="Period value",
                                            help_text="Required unless the unit is 'forever'.")

    class Meta:
        model = Product
        fields = ("product_key", "name", "description", "product_type", "is_active",
                  "is_currency", "created_at", "metadata", "translations")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        price = data.get("offer_price")
        if price is None:
            return data
        unit = data.get("offer_period_unit") or FOREVER
        value = data.get("offer_period_value")
        if unit != FOREVER and not value:
            self.add_error("offer_period_value", "Required for a limited period.")
        elif unit != FOREVER and not span_allowed(unit, value):
            self.add_error("offer_period_value",
                           f"A period may last at most {MAX_PERIOD_YEARS} years.")
        currency = (data.get("offer_currency") or billable_settings.CURRENCY).strip().upper()
        if currency == STARS_CURRENCY and price != price.to_integral_value():
            self.add_error("offer_price", "Prices in Telegram Stars (XTR) must be whole numbers.")
        data["offer_currency"] = currency
        data["offer_period_unit"] = unit
        return data


class OfferItemInlineForm(forms.ModelForm):
    """An offer item; a limited period needs a value; quantities fit the integer columns on
    every database (PostgreSQL refuses more than ``MAX_AMOUNT``, SQLite would store it)."""

    class Meta:
        model = OfferItem
        fields = ("product", "quantity", "period_unit", "period_value")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("period_unit", FOREVER) != FOREVER and not data.get("period_value"):
            self.add_error("period_value", "Required for a limited period.")
        if (data.get("quantity") or 0) > MAX_AMOUNT:
            self.add_error("quantity", f"At most {MAX_AMOUNT}.")
        return data


class OfferItemInline(admin.TabularInline):
    """The products an offer grants."""

    model = OfferItem
    form = OfferItemInlineForm
    extra = 1
    autocomplete_fields = ("product",)  # searches ProductAdmin.search_fields (key, name)


@admin.register(Product)
class ProductAdmin(CsvAdminMixin, admin.ModelAdmin):
    """Products: CAPS keys, quick offer creation, a usage report and CSV import/export."""

    formfield_overrides = JSON_FIELD_OVERRIDES

    form = ProductAdminForm
    csv_name = "products"
    csv_headers = catalog_io.PRODUCT_CSV_FIELDS
    change_list_template = "admin/billable/product/change_list.html"
    list_display = ("product_key", "name", "product_type", "is_currency", "is_active",
                    "created_at")
    list_filter = ("product_type", "is_currency", "is_active")
    search_fields = ("product_key", "name")
    readonly_fields = ("offers_overview", "product_report")
    actions = ("export_products_csv",)
    fieldsets = (
        (None, {
            "fields": ("product_key", "name", "description", "product_type", "is_active",
                       "is_currency"),
            "description": "Product keys are stored upper-case and share one namespace "
                           "with offer SKUs.",
        }),
        (_("Create an offer GET_<KEY>"), {
            "fields": (("offer_price", "offer_currency"),
                       ("offer_quantity", "offer_period_unit", "offer_period_value")),
        }),
        (_("Translations"), {"fields": ("translations",),
                          "description": 'Name and description per language, e.g. '
                                         '{"ru": {"name": "Прогнозы"}}. Missing ones fall back '
                                         "to the fields above."}),
        (_("Sold in"), {"fields": ("offers_overview",)}),
        (_("Report: sources and debits"), {"fields": ("product_report",)}),
        (_("Metadata"), {"classes": ("collapse",), "fields": ("metadata", "created_at")}),
    )

    def get_urls(self) -> list[Any]:
        return [*self.csv_urls(), *super().get_urls()]

    def csv_export_text(self, queryset: QuerySet[Any]) -> str:
        return catalog_io.export_products_csv(queryset)

    def csv_import_data(self, data: bytes, *, strict: bool) -> ImportResult:
        return catalog_io.import_products_csv(data, strict=strict)

    @admin.action(description=_("Export selected products (CSV)"))
    def export_products_csv(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse:
        """Admin action: CSV of the selection (everything when the selection is empty)."""
        return self.csv_response(queryset)

    def export_products_all_view(self, request: HttpRequest) -> HttpResponse:
        """The changelist's "Export CSV" button."""
        return self.csv_export_view(request)

    def import_products_view(self, request: HttpRequest) -> HttpResponse:
        """Upload form (GET) and import (POST ``csv_file``; ``strict`` = all or nothing)."""
        return self.csv_import_view(request)

    @admin.display(description=_("Offers"))
    def offers_overview(self, obj: Product | None) -> str:
        if obj is None or obj.pk is None:
            return "Save the product first."
        items = obj.offer_items.select_related("offer").order_by("offer__sku")
        if not items:
            return "Not sold in any offer yet."
        return format_html_join(
            "", '<div><a href="{}">{}</a> — {} × {} ({}){}</div>',
            ((admin_url("billable.offer", item.offer_id) or "#", item.offer.sku,
              money(item.offer.price, item.offer.currency), item.quantity,
              item.get_period_unit_display(), "" if item.offer.is_active else " — inactive")
             for item in items),
        )

    @admin.display(description=_("Report"))
    def product_report(self, obj: Product | None) -> str:
        if obj is None or obj.pk is None:
            return "Save the product first."
        return render_to_string("admin/billable/product/report.html",
                                {"activity": build_product_activity(obj)})

    def save_model(self, request: HttpRequest, obj: Product, form: Any, change: bool) -> None:
        """Save the product, then create the quick offer when a price was entered."""
        super().save_model(request, obj, form, change)
        data = form.cleaned_data
        if data.get("offer_price") is None:
            return
        try:
            offer = catalog_io.create_quick_offer(
                obj, data["offer_price"], currency=data.get("offer_currency") or None,
                quantity=data.get("offer_quantity") or 1,
                period_unit=data.get("offer_period_unit") or FOREVER,
                period_value=data.get("offer_period_value"),
            )
        except BillableError as exc:
            self.message_user(request, f"Offer not created: {exc.message}", messages.ERROR)
            return
        self.message_user(request, format_html('Offer <a href="{}">{}</a> created.',
                                               admin_url("billable.offer", offer.pk) or "#",
                                               offer.sku), messages.SUCCESS)


class OfferAdminForm(forms.ModelForm):
    """The offer form; an XTR price is shown whole (``50``, not ``50.00``).

    No ``Meta``: the admin builds it for ``Offer`` (with its ``formfield_overrides``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        price = self.initial.get("price")
        if price is not None:
            self.initial["price"] = whole_stars(price, self.initial.get("currency"))


@admin.register(Offer)
class OfferAdmin(CsvAdminMixin, admin.ModelAdmin):
    """Offers with their items inline and CSV import/export (one row per item)."""

    form = OfferAdminForm
    csv_name = "offers"
    csv_headers = catalog_io.OFFER_CSV_HEADERS
    change_list_template = "admin/billable/offer/change_list.html"
    list_display = ("sku", "name", "price_display", "currency", "is_active", "created_at")
    list_filter = ("currency", "is_active")
    search_fields = ("sku", "name")
    inlines = (OfferItemInline,)
    actions = ("export_offers_csv",)
    formfield_overrides = {**JSON_FIELD_OVERRIDES,
                           models.URLField: {"assume_scheme": "https"}}

    def get_urls(self) -> list[Any]:
        return [*self.csv_urls(), *super().get_urls()]

    @admin.display(description=_("Price"), ordering="price")
    def price_display(self, obj: Offer) -> str:
        return money(obj.price, obj.currency, with_currency=False)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False,
                 **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if "sku" in form.base_fields:
            form.base_fields["sku"].help_text = (
                "Stored upper-case ('gold_100' becomes 'GOLD_100'); must not equal a product key."
            )
        return form

    def csv_export_text(self, queryset: QuerySet[Any]) -> str:
        return catalog_io.export_offers_csv(queryset)

    def csv_import_data(self, data: bytes, *, strict: bool) -> ImportResult:
        return catalog_io.import_offers_csv(data, strict=strict)

    @admin.action(description=_("Export selected offers (CSV)"))
    def export_offers_csv(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse:
        """Admin action: CSV of the selection (everything when the selection is empty)."""
        return self.csv_response(queryset)

    def export_offers_all_view(self, request: HttpRequest) -> HttpResponse:
        """The changelist's "Export CSV" button."""
        return self.csv_export_view(request)

    def import_offers_view(self, request: HttpRequest) -> HttpResponse:
        """Upload form (GET) and import (POST ``csv_file``; ``strict`` = all or nothing)."""
        return self.csv_import_view(request)
