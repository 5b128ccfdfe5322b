"""Customer admin (a proxy of the user model): billing profile, reports, nothing editable.

Two report pages hang off each customer:

* ``<id>/report/`` (``admin:billable_customer_report``) — identities, per-product balances,
  orders and the latest ledger rows;
* ``<id>/product-report/<product_id>/`` (``admin:billable_customer_product_report``) — one
  product: batches as sources (credits), debits and a running balance.

``<id>/grant/`` (``admin:billable_customer_grant``) grants an offer by hand through
``TransactionService.grant_offer`` (``action_type="manual_grant"``, reason recorded).
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, IntegerField, OuterRef, QuerySet, Subquery, Sum
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from billable.admin.reports import (
    admin_url,
    build_customer_report,
    build_product_report,
    customer_products,
)
from billable.exceptions import BillableError
from billable.models import Customer, ExternalIdentity, Offer, Order, Product, QuotaBatch
from billable.services import TransactionService

_USERNAME = get_user_model().USERNAME_FIELD


def _spendable_subquery() -> Subquery:
    batches = (
        QuotaBatch.objects.filter(user=OuterRef("pk")).spendable()
        .order_by().values("user").annotate(total=Sum("remaining_quantity")).values("total")
    )
    return Subquery(batches, output_field=IntegerField())


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    """Billing accounts: who they are, what they hold, what they bought. View only."""

    list_display = ("__str__", "external_ids", "spendable_units")
    search_fields = (_USERNAME, "billable_external_identities__external_id")
    fields = ("identities", "products_overview", "reports")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # accounts are created by the host (users admin, API, bot)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        """Only accounts with some billing record, with their spendable units annotated."""
        def owned(model: Any) -> Exists:
            return Exists(model.objects.filter(user=OuterRef("pk")))

        return (
            super().get_queryset(request)
            .filter(owned(QuotaBatch) | owned(Order) | owned(ExternalIdentity))
            .annotate(billable_spendable=_spendable_subquery())
            .prefetch_related("billable_external_identities")
        )

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/report/", wrap(self.customer_report_view),
                 name="billable_customer_report"),
            path("<path:object_id>/grant/", wrap(self.grant_offer_view),
                 name="billable_customer_grant"),
            path("<path:object_id>/product-report/<int:product_id>/",
                 wrap(self.product_usage_report_view),
                 name="billable_customer_product_report"),
            *super().get_urls(),
        ]

    @admin.display(description="External identities")
    def external_ids(self, obj: Any) -> str:
        return ", ".join(str(i) for i in obj.billable_external_identities.all()) or "—"

    @admin.display(description="Spendable units", ordering="billable_spendable")
    def spendable_units(self, obj: Any) -> int:
        return getattr(obj, "billable_spendable", None) or 0

    @admin.display(description="Identities")
    def identities(self, obj: Any) -> str:
        rows = obj.billable_external_identities.all()
        if not rows:
            return "—"
        return format_html_join(
            " ", '<a href="{}">{}</a>',
            ((admin_url("billable.externalidentity", i.pk) or "#", str(i)) for i in rows),
        )

    @admin.display(description="Products")
    def products_overview(self, obj: Any) -> str:
        return render_to_string("admin/billable/customer/products_table.html",
                                {"customer": obj, "products": customer_products(obj.pk)})

    @admin.display(description="Reports")
    def reports(self, obj: Any) -> str:
        return format_html(
            '<a class="button" href="{}">Customer report</a> '
            '<a class="button" href="{}">Grant an offer</a> '
            '<a class="button" href="{}?user__exact={}">All quota batches</a>',
            reverse("admin:billable_customer_report", args=[obj.pk]),
            reverse("admin:billable_customer_grant", args=[obj.pk]),
            reverse("admin:billable_quotabatch_changelist"), obj.pk,
        )

    def _customer_or_404(self, request: HttpRequest, object_id: str) -> Any:
        customer = self.get_object(request, unquote(object_id))
        if customer is None:
            raise Http404("Customer not found")
        if not self.has_view_permission(request, customer):
            raise PermissionDenied
        return customer

    def _context(self, request: HttpRequest, customer: Any, title: str) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.opts,
                "customer": customer, "title": title}

    def customer_report_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Identities, per-product balances, orders and the latest ledger rows."""
        customer = self._customer_or_404(request, object_id)
        context = self._context(request, customer, f"Billing report: {customer}")
        context["report"] = build_customer_report(customer)
        return TemplateResponse(request, "admin/billable/customer/report.html", context)

    def product_usage_report_view(self, request: HttpRequest, object_id: str,
                                  product_id: int) -> HttpResponse:
        """One product for one customer: sources, debits and the running balance."""
        customer = self._customer_or_404(request, object_id)
        product = Product.objects.filter(pk=product_id).first()
        if product is None:
            raise Http404("Product not found")
        context = self._context(request, customer, f"Product report: {product.name}")
        context["report"] = build_product_report(customer.pk, product)
        return TemplateResponse(request, "admin/billable/customer/product_report.html", context)

    def grant_offer_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Grant an offer by hand (compensation, gifts) through the ledger service.

        Needs the ``billable.add_quotabatch`` permission. The form carries a one-time token used
        as the service's idempotency key, so a double submit grants once.
        """
        customer = self._customer_or_404(request, object_id)
        if not request.user.has_perm("billable.add_quotabatch"):
            raise PermissionDenied
        form = ManualGrantForm(request.POST or None,
                               initial={"token": uuid.uuid4().hex})
        if request.method == "POST" and form.is_valid():
            try:
                batches = form.grant(customer.pk, admin_user=request.user)
            except BillableError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"Granted {form.cleaned_data['offer'].sku}: "
                                           f"{len(batches)} batch(es).", messages.SUCCESS)
                return HttpResponseRedirect(
                    reverse("admin:billable_customer_change", args=[customer.pk]))
        context = self._context(request, customer, f"Grant an offer to {customer}")
        context["form"] = form
        return TemplateResponse(request, "admin/billable/customer/grant.html", context)


class ManualGrantForm(forms.Form):
    """Which offer to grant and why; the reason lands in the CREDIT rows' metadata."""

    offer = forms.ModelChoiceField(queryset=Offer.objects.order_by("sku"))
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3}))
    token = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def grant(self, user_id: Any, *, admin_user: Any) -> list[QuotaBatch]:
        """Run the grant (``source="manual_grant"``); idempotent per form token."""
        data = self.cleaned_data
        return TransactionService.grant_offer(
            user_id, data["offer"], source="manual_grant",
            metadata={"reason": data["reason"], "granted_by": str(admin_user),
                      "granted_by_id": admin_user.pk},
            idempotency_key=f"admin-grant:{data['token']}",
        )
