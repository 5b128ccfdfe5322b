"""Ledger admin: the wallet (quota batches), the immutable ledger, holds and idempotency keys.

All of it is read-only. Money moves only through the services (``TransactionService``,
``OrderService``); editing a batch or a ledger row by hand would break the ledger invariant.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from billable.admin.display import CustomerColumnMixin
from billable.admin.reports import admin_url, batch_source, batch_state_label, related_document
from billable.models import (
    CustomerMerge,
    IdempotencyKey,
    QuotaBatch,
    Reservation,
    ReservationItem,
    Transaction,
)

_USER_SEARCH = f"user__{get_user_model().USERNAME_FIELD}"
#: Ledger rows shown on a batch page (the rest are one click away, filtered).
BATCH_LEDGER_ROWS = 50


class ReadOnlyAdminMixin:
    """No add, change or delete, and no bulk delete action: the rows are history."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = super().get_actions(request)  # type: ignore[misc]
        actions.pop("delete_selected", None)
        return actions


class SpendableFilter(admin.SimpleListFilter):
    """Filter batches by the services' spendability rule (not by the stored state)."""

    title = _("spendable now")
    parameter_name = "spendable"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        spendable = QuotaBatch.objects.spendable().values("pk")
        if self.value() == "yes":
            return queryset.filter(pk__in=spendable)
        if self.value() == "no":
            return queryset.exclude(pk__in=spendable)
        return queryset


def signed_amount(tx: Transaction) -> str:
    """``+n`` for a credit, ``−n`` for a debit, coloured."""
    credit = tx.direction == Transaction.Direction.CREDIT
    return format_html('<span style="color:{}">{}{}</span>', "green" if credit else "#ba2121",
                       "+" if credit else "−", tx.amount)


@admin.register(QuotaBatch)
class QuotaBatchAdmin(CustomerColumnMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Quota batches (the wallet), read-only, with their ledger rows."""

    list_display = ("id", "customer", "product", "utilization", "effective_state", "valid_from",
                    "expires_at", "created_at")
    list_filter = (SpendableFilter, "state", "product")
    list_select_related = ("user", "product")
    search_fields = (_USER_SEARCH, "product__product_key", "product__name")
    readonly_fields = ("effective_state", "source", "ledger")
    date_hierarchy = "created_at"

    @admin.display(description=_("Remaining / initial"))
    def utilization(self, obj: QuotaBatch) -> str:
        return f"{obj.remaining_quantity} / {obj.initial_quantity}"

    @admin.display(description=_("State (now)"))
    def effective_state(self, obj: QuotaBatch) -> str:
        return batch_state_label(obj, timezone.now())

    @admin.display(description=_("Ledger rows"))
    def ledger(self, obj: QuotaBatch) -> str:
        """The newest rows of this batch, and a link to all of them (batches can be long)."""
        rows = list(obj.transactions.order_by("-created_at", "-id")[:BATCH_LEDGER_ROWS])
        all_url = reverse("admin:billable_transaction_changelist")
        lines = format_html_join(
            "", '<div><a href="{}">{}</a> {} {}</div>',
            ((admin_url("billable.transaction", tx.pk) or "#",
              tx.created_at.strftime("%Y-%m-%d %H:%M:%S"), signed_amount(tx), tx.action_type)
             for tx in rows),
        )
        return format_html('{}<div><a href="{}?quota_batch__exact={}">{}</a></div>', lines,
                           all_url, obj.pk, gettext("All rows of this batch"))

    @admin.display(description=_("Source"))
    def source(self, obj: QuotaBatch) -> str:
        link = batch_source(obj)
        if link.url:
            return format_html('<a href="{}">{}</a>', link.url, link.label)
        return link.label


@admin.register(Transaction)
class TransactionAdmin(CustomerColumnMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """The ledger: append-only, never editable or deletable here."""

    list_display = ("id", "customer", "product", "amount_display", "direction", "action_type",
                    "document", "created_at")
    list_filter = ("direction", "action_type", "quota_batch__product")
    list_select_related = ("user", "quota_batch__product", "content_type")
    search_fields = (_USER_SEARCH, "action_type", "object_id")
    readonly_fields = ("document",)
    date_hierarchy = "created_at"

    @admin.display(description=_("Product"))
    def product(self, obj: Transaction) -> str:
        return str(obj.quota_batch.product)

    @admin.display(description=_("Amount"))
    def amount_display(self, obj: Transaction) -> str:
        return signed_amount(obj)

    @admin.display(description=_("Related"))
    def document(self, obj: Transaction) -> str:
        link = related_document(obj)
        if link is None:
            return "—"
        if link.url:
            return format_html('<a href="{}">{}</a>', link.url, link.label)
        return link.label


class ReservationItemInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Which batches a hold took its units from."""

    model = ReservationItem
    extra = 0
    fields = ("quota_batch", "amount")
    readonly_fields = fields


@admin.register(Reservation)
class ReservationAdmin(CustomerColumnMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Holds made by ``reserve_quota``; settled only through the service."""

    list_display = ("id", "customer", "product", "amount", "committed_amount", "state",
                    "expires_at", "created_at", "settled_at")
    list_filter = ("state", "product")
    list_select_related = ("user", "product")
    search_fields = (_USER_SEARCH, "action_type", "idempotency_key")
    inlines = (ReservationItemInline,)


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(CustomerColumnMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Idempotency keys: which request first used a key, and what it returned."""

    list_display = ("key", "operation", "customer", "created_at")
    list_filter = ("operation",)
    list_select_related = ("user",)
    search_fields = ("key", _USER_SEARCH)
    readonly_fields = ("customer",)


@admin.register(CustomerMerge)
class CustomerMergeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The audit trail of customer merges (written by ``CustomerService.merge_customers``)."""

    list_display = ("created_at", "source_id_value", "target_id_value")
    search_fields = ("source_id_value", "target_id_value")
    readonly_fields = ("created_at", "source_user", "target_user", "source_id_value",
                       "target_id_value", "stats")
