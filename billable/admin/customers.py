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
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from billable.admin.display import money
from billable.admin.reports import (
    admin_url,
    build_customer_report,
    build_product_report,
    customer_payments,
    customer_products,
)
from billable.exceptions import BillableError
from billable.models import (
    Customer,
    ExternalIdentity,
    Offer,
    Order,
    Product,
    QuotaBatch,
    Reservation,
)
from billable.models.identities import DISPLAY_FIELDS
from billable.services import TransactionService

_USER_MODEL = get_user_model()
_USERNAME = _USER_MODEL.USERNAME_FIELD
_IDENTITY = "billable_external_identities"


def _user_has(name: str) -> bool:
    return any(f.name == name for f in _USER_MODEL._meta.get_fields())


#: What the customer search looks in: the login name, the user's own names (when the user model
#: has them), external ids and the profile kept in identity metadata (Telegram username, first
#: and last name). A leading ``@`` of a search term is ignored (``@alice`` finds ``alice``).
CUSTOMER_SEARCH_FIELDS = (
    _USERNAME,
    *(name for name in ("first_name", "last_name", "email") if _user_has(name)),
    f"{_IDENTITY}__external_id",
    *(f"{_IDENTITY}__metadata__{key}" for key in DISPLAY_FIELDS),
)
#: Open holds and orders listed on the customer page (the rest are one click away, filtered).
PANEL_ROWS = 20


def _spendable_subquery() -> Subquery:
    batches = (
        QuotaBatch.objects.filter(user=OuterRef("pk")).spendable()
        .order_by().values("user").annotate(total=Sum("remaining_quantity")).values("total")
    )
    return Subquery(batches, output_field=IntegerField())


def _profile(identity: ExternalIdentity) -> str:
    """``@alice_stars · Alice Moreau · fr`` from the identity metadata ('' when none)."""
    meta = identity.metadata if isinstance(identity.metadata, dict) else {}
    name = " ".join(str(meta[k]) for k in ("first_name", "last_name") if meta.get(k))
    parts = [f"@{meta['username']}" if meta.get("username") else "", name,
             str(meta.get("language_code") or "")]
    return " · ".join(part for part in parts if part)


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    """Billing accounts: who they are, what they hold, what they bought. View only."""

    list_display = ("__str__", "external_ids", "spendable_units")
    search_fields = CUSTOMER_SEARCH_FIELDS
    search_help_text = _("Telegram @username, first or last name, external id (e.g. the "
                          "Telegram user id) or login name.")
    fields = ("identities", "products_overview", "open_holds", "orders_overview",
              "payments_overview", "reports")
    readonly_fields = fields

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any],
                           search_term: str) -> tuple[QuerySet[Any], bool]:
        """Search as usual, with a leading ``@`` of each word dropped (``@alice``)."""
        term = " ".join(word.lstrip("@") for word in search_term.split())
        return super().get_search_results(request, queryset, term)

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

    @admin.display(description=_("External identities"))
    def external_ids(self, obj: Any) -> str:
        return ", ".join(str(i) for i in obj.billable_external_identities.all()) or "—"

    @admin.display(description=_("Spendable units"), ordering="billable_spendable")
    def spendable_units(self, obj: Any) -> int:
        return getattr(obj, "billable_spendable", None) or 0

    @admin.display(description=_("Identities"))
    def identities(self, obj: Any) -> str:
        rows = obj.billable_external_identities.all()
        if not rows:
            return "—"
        return format_html_join(
            "", '<div><a href="{}">{}</a> {}</div>',
            ((admin_url("billable.externalidentity", i.pk) or "#", str(i), _profile(i))
             for i in rows),
        )

    @admin.display(description=_("Products"))
    def products_overview(self, obj: Any) -> str:
        return render_to_string("admin/billable/customer/products_table.html",
                                {"customer": obj, "products": customer_products(obj.pk)})

    @admin.display(description=_("Open holds"))
    def open_holds(self, obj: Any) -> str:
        holds = list(Reservation.objects.filter(user=obj, state=Reservation.State.HELD)
                     .select_related("product").order_by("expires_at", "id")[:PANEL_ROWS])
        return render_to_string("admin/billable/customer/holds_table.html", {
            "holds": holds, "customer": obj,
            "all_url": f"{reverse('admin:billable_reservation_changelist')}"
                       f"?user__exact={obj.pk}&state__exact=HELD",
        })

    @admin.display(description=_("Orders"))
    def orders_overview(self, obj: Any) -> str:
        orders = list(Order.objects.filter(user=obj).prefetch_related("items__offer")
                      .order_by("-created_at", "-id")[:PANEL_ROWS])
        rows = [{"order": order, "total": money(order.total_amount, order.currency),
                 "url": admin_url("billable.order", order.pk)} for order in orders]
        return render_to_string("admin/billable/customer/orders_table.html", {
            "rows": rows,
            "all_url": f"{reverse('admin:billable_order_changelist')}?user__exact={obj.pk}",
        })

    @admin.display(description=_("Payments"))
    def payments_overview(self, obj: Any) -> str:
        return render_to_string("admin/billable/customer/payments_table.html",
                                {"payments": customer_payments(obj.pk)})

    @admin.display(description=_("Reports"))
    def reports(self, obj: Any) -> str:
        return format_html(
            '<a class="button" href="{}">{}</a> '
            '<a class="button" href="{}">{}</a> '
            '<a class="button" href="{}?user__exact={}">{}</a>',
            reverse("admin:billable_customer_report", args=[obj.pk]), gettext("Customer report"),
            reverse("admin:billable_customer_grant", args=[obj.pk]), gettext("Grant an offer"),
            reverse("admin:billable_quotabatch_changelist"), obj.pk,
            gettext("All quota batches"),
        )

    def _customer_or_404(self, request: HttpRequest, object_id: str) -> Any:
        customer = self.get_object(request, unquote(object_id))
        if customer is None:
            raise Http404(gettext("Customer not found"))
        if not self.has_view_permission(request, customer):
            raise PermissionDenied
        return customer

    def _context(self, request: HttpRequest, customer: Any, title: str) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.opts,
                "customer": customer, "title": title}

    def customer_report_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Identities, per-product balances, orders and the latest ledger rows."""
        customer = self._customer_or_404(request, object_id)
        title = gettext("Billing report: %(customer)s") % {"customer": customer}
        context = self._context(request, customer, title)
        context["report"] = build_customer_report(customer)
        return TemplateResponse(request, "admin/billable/customer/report.html", context)

    def product_usage_report_view(self, request: HttpRequest, object_id: str,
                                  product_id: int) -> HttpResponse:
        """One product for one customer: sources, debits and the running balance."""
        customer = self._customer_or_404(request, object_id)
        product = Product.objects.filter(pk=product_id).first()
        if product is None:
            raise Http404(gettext("Product not found"))
        title = gettext("Product report: %(product)s") % {"product": product.name}
        context = self._context(request, customer, title)
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
                self.message_user(request, gettext("Granted %(sku)s: %(count)d batch(es).") % {
                    "sku": form.cleaned_data["offer"].sku, "count": len(batches)},
                    messages.SUCCESS)
                return HttpResponseRedirect(
                    reverse("admin:billable_customer_change", args=[customer.pk]))
        title = gettext("Grant an offer to %(customer)s") % {"customer": customer}
        context = self._context(request, customer, title)
        context["form"] = form
        return TemplateResponse(request, "admin/billable/customer/grant.html", context)


class ManualGrantForm(forms.Form):
    """Which offer to grant and why; the reason lands in the CREDIT rows' metadata."""

    offer = forms.ModelChoiceField(queryset=Offer.objects.order_by("sku"), label=_("Offer"))
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3}),
                             label=_("Reason"))
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
