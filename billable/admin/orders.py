"""Order admin: read the orders, move them through their lifecycle only via ``OrderService``.

Status, amounts and payment fields are never edited by hand: the confirm / cancel / refund
actions call the service, which grants or revokes quota in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from billable.admin.display import CustomerColumnMixin, customer_link, money
from billable.admin.json_field import JSON_FIELD_OVERRIDES
from billable.admin.ledger import ReadOnlyAdminMixin
from billable.exceptions import BillableError
from billable.growth.gifts import GiftService
from billable.models import Order, OrderItem
from billable.services import OrderService

#: ``payment_method`` recorded when an administrator confirms an order by hand.
ADMIN_PAYMENT_METHOD = "admin"


class OrderItemInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Order lines with the catalog price and the contents (snapshot) at order time."""

    model = OrderItem
    extra = 0
    fields = ("offer", "quantity", "unit_price", "contents")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related("order")

    @admin.display(description=_("Price"))
    def unit_price(self, obj: OrderItem) -> str:
        return money(obj.price, obj.order.currency if obj.order_id else None)

    @admin.display(description=_("Grants (per unit, frozen at order time)"))
    def contents(self, obj: OrderItem) -> str:
        """The snapshot as text, e.g. ``10 × TOKENS; 1 × PREMIUM for 30 days``."""
        if not isinstance(obj.snapshot, dict):
            return gettext("— (no snapshot: granted from the offer at payment)")
        parts = []
        for item in obj.snapshot.get("items", []):
            period = item.get("period_unit")
            span = "" if period == "forever" else gettext(" for %(value)s %(unit)s") % {
                "value": item.get("period_value"), "unit": period}
            parts.append(f"{item.get('quantity')} × {item.get('product_key')}{span}")
        return "; ".join(parts) or gettext("nothing")


def _run_for_each(admin_obj: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any],
                  operation: Callable[[Order], Any], done: Any) -> None:
    """Apply ``operation`` to every selected order; report successes and refusals."""
    succeeded: list[str] = []
    for order in queryset.order_by("pk"):
        try:
            operation(order)
        except BillableError as exc:
            admin_obj.message_user(request, gettext("Order #%(id)s: %(error)s") % {
                "id": order.pk, "error": exc.message}, messages.ERROR)
        else:
            succeeded.append(f"#{order.pk}")
    if succeeded:
        admin_obj.message_user(request, gettext("%(done)s: %(orders)s.") % {
            "done": done, "orders": ", ".join(succeeded)}, messages.SUCCESS)


@admin.register(Order)
class OrderAdmin(CustomerColumnMixin, admin.ModelAdmin):
    """Orders: only ``metadata`` is editable; lifecycle changes go through the actions."""

    formfield_overrides = JSON_FIELD_OVERRIDES

    list_display = ("id", "customer", "total", "currency", "status", "payment_method",
                    "payment_id", "created_at", "paid_at")
    list_filter = ("status", "currency", "payment_method")
    list_select_related = ("user",)
    search_fields = ("=id", "payment_id", f"user__{get_user_model().USERNAME_FIELD}",
                     "user__billable_external_identities__external_id",
                     "user__billable_external_identities__metadata__username")
    readonly_fields = ("customer_page", "total", "currency", "status", "payment_method",
                       "payment_id", "created_at", "paid_at")
    fields = (*readonly_fields, "metadata")
    date_hierarchy = "created_at"
    inlines = (OrderItemInline,)
    actions = ("confirm_orders", "cancel_orders", "refund_orders")

    @admin.display(description=_("Total"), ordering="total_amount")
    def total(self, obj: Order) -> str:
        return money(obj.total_amount, obj.currency, with_currency=False)

    @admin.display(description=_("Customer"))
    def customer_page(self, obj: Order) -> str:
        return customer_link(obj.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # orders come from OrderService.create_order (API, bot, host code)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # financial records; cancel or refund instead

    @admin.action(description=_("Confirm payment (grant products)"),
                  permissions=["change"])
    def confirm_orders(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        """``OrderService.pay_order`` for each pending order (payment method ``admin``); a
        gift's order is paid as a gift (``GiftService.pay_gift_order``: nothing granted, the
        gift becomes claimable)."""
        _run_for_each(self, request, queryset, _confirm, _("Confirmed"))

    @admin.action(description=_("Cancel pending orders"), permissions=["change"])
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        """``OrderService.cancel_pending_order`` for each selected order."""
        reason = f"cancelled in admin by {request.user}"
        _run_for_each(self, request, queryset,
                      lambda o: OrderService.cancel_pending_order(o.pk, reason=reason),
                      _("Cancelled"))

    @admin.action(description=_("Refund paid orders (revoke products)"), permissions=["change"])
    def refund_orders(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        """``OrderService.refund_paid_order`` for each selected order (billing side only)."""
        reason = f"refunded in admin by {request.user}"
        _run_for_each(self, request, queryset,
                      lambda o: OrderService.refund_paid_order(o.pk, reason=reason),
                      _("Refunded"))


def _confirm(order: Order) -> Any:
    if GiftService.is_gift_order(order.pk):
        return GiftService.pay_gift_order(order.pk, payment_method=ADMIN_PAYMENT_METHOD)
    return OrderService.pay_order(order.pk, payment_method=ADMIN_PAYMENT_METHOD)
