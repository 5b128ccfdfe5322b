"""Admin of promo codes (with their uses, CSV export and bulk generation), gifts and alerts."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.translation import gettext_lazy as _

from billable.admin.json_field import JSON_FIELD_OVERRIDES
from billable.admin.ledger import ReadOnlyAdminMixin
from billable.exceptions import BillableError
from billable.growth.codes import codes_csv, generate_codes
from billable.models import (
    AlertNotice,
    Gift,
    NotificationPreference,
    ProductAlert,
    PromoCode,
    PromoIdentityUse,
    PromoRedemption,
)


class PromoRedemptionInline(admin.TabularInline):
    """A code's uses (read-only)."""

    model = PromoRedemption
    extra = 0
    can_delete = False
    fields = ("user", "status", "offer", "list_price", "price", "currency", "order",
              "created_at", "redeemed_at", "released_at")
    readonly_fields = fields
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PromoIdentityUseInline(admin.TabularInline):
    """The hashed identities a use claimed ("once per customer" guard; read-only)."""

    model = PromoIdentityUse
    fk_name = "redemption"
    extra = 0
    can_delete = False
    fields = ("identity_type", "identity_hash")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class GenerateCodesForm(forms.ModelForm):
    """How many codes, their shape, and the template every code copies."""

    count = forms.IntegerField(min_value=1, max_value=100_000, initial=100)
    code_prefix = forms.CharField(required=False, max_length=32, label=_("Prefix"))
    length = forms.IntegerField(min_value=6, max_value=32, initial=10)

    class Meta:
        model = PromoCode
        fields = ("kind", "offer", "percent_off", "amount_off", "currency", "max_uses",
                  "once_per_customer", "first_time_only", "valid_from", "valid_until",
                  "is_active", "batch")


@admin.register(PromoCode)
class PromoCodeAdmin(admin.ModelAdmin):
    """Codes with their use counts; uses inline; CSV export; "Generate codes" page."""

    formfield_overrides = JSON_FIELD_OVERRIDES

    list_display = ("code", "kind", "offer", "uses", "is_active", "valid_from", "valid_until",
                    "first_time_only", "batch")
    list_filter = ("kind", "is_active", "first_time_only", "batch")
    search_fields = ("code", "batch")
    readonly_fields = ("uses_count", "created_at")
    inlines = [PromoRedemptionInline]
    actions = ["export_csv"]

    @admin.display(description=_("Uses"))
    def uses(self, obj: PromoCode) -> str:
        return f"{obj.uses_count} / {obj.max_uses if obj.max_uses is not None else '∞'}"

    @admin.action(description=_("Export the selected codes as CSV"))
    def export_csv(self, request: HttpRequest, queryset: QuerySet[PromoCode]) -> HttpResponse:
        return _csv_response(codes_csv(queryset.select_related("offer").order_by("id")))

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(self.generate_view)
        return [path("generate/", view, name="billable_promocode_generate"),
                *super().get_urls()]

    def generate_view(self, request: HttpRequest) -> HttpResponse:
        """The bulk generation form; a valid POST answers with the CSV of the new codes."""
        if not self.has_add_permission(request):
            return HttpResponse(status=403)
        form = GenerateCodesForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = dict(form.cleaned_data)
            count, prefix, length = data.pop("count"), data.pop("code_prefix"), data.pop("length")
            batch = data.pop("batch")
            try:
                codes = generate_codes(count, prefix=prefix, length=length, batch=batch, **data)
            except BillableError as exc:
                form.add_error(None, exc.message)
            else:
                return _csv_response(codes_csv(codes))
        context = {**self.admin_site.each_context(request), "opts": self.opts, "form": form,
                   "title": "Generate promo codes"}
        return TemplateResponse(request, "admin/billable/promocode/generate.html", context)


def _csv_response(text: str) -> HttpResponse:
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="promo_codes.csv"'
    return response


@admin.register(PromoRedemption)
class PromoRedemptionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every use of every code (read-only)."""

    list_display = ("promo", "user", "status", "offer", "list_price", "price", "currency",
                    "order", "created_at")
    list_filter = ("status",)
    search_fields = ("promo__code",)
    inlines = [PromoIdentityUseInline]


@admin.register(Gift)
class GiftAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Gifts and who claimed them (read-only; refunds go through the order)."""

    list_display = ("id", "offer", "buyer", "status", "claimed_by", "claimed_at", "expires_at",
                    "order")
    list_filter = ("status",)
    exclude = ("token",)


@admin.register(ProductAlert)
class ProductAlertAdmin(admin.ModelAdmin):
    """Per-product low-balance thresholds and expiry reminders."""

    list_display = ("product", "low_balance_units", "low_balance_percent", "expiry_days",
                    "buy_offer", "is_active")
    list_filter = ("is_active",)


@admin.register(AlertNotice)
class AlertNoticeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Notices recorded by the alert scan and whether the bot delivered them."""

    list_display = ("kind", "user", "product", "balance", "threshold", "expires_at", "delivery",
                    "created_at", "delivered_at")
    list_filter = ("kind", "delivery")


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    """Customers who turned alert messages off (or back on)."""

    list_display = ("user", "alerts_enabled", "updated_at")
    list_filter = ("alerts_enabled",)


__all__ = ["AlertNoticeAdmin", "GiftAdmin", "NotificationPreferenceAdmin", "ProductAlertAdmin",
           "PromoCodeAdmin", "PromoRedemptionAdmin"]
