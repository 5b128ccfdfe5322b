"""Admin of the purchase flow and the inbox: payments are read-only; refunds can be re-armed
or requested; dead-lettered inbox updates can be re-queued."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from billable.exceptions import BillableError
from bot_kit.inbox import store
from bot_kit.models import InboxUpdate, RefundRequest, StarSubscription, TelegramPayment
from bot_kit.payments import refunds


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the bot: visible, never editable or deletable by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TelegramPayment)
class TelegramPaymentAdmin(ReadOnlyAdmin):
    list_display = ("charge_id", "telegram_user_id", "user", "order", "total_amount",
                    "currency", "status", "reason", "is_recurring", "created_at")
    list_filter = ("status", "currency", "is_recurring")
    search_fields = ("charge_id", "telegram_user_id", "order__id")
    date_hierarchy = "created_at"
    list_select_related = ("user", "order")
    actions = ("request_refund",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The change list must allow actions; the form stays read-only (no editable fields).
        return obj is None and super(ReadOnlyAdmin, self).has_change_permission(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [field.name for field in self.model._meta.fields]

    @admin.action(description=_("Refund the selected payments (through the outbox)"))
    def request_refund(self, request: HttpRequest, queryset: QuerySet[TelegramPayment]) -> None:
        queued = 0
        for payment in queryset:
            try:
                refunds.request_refund(payment.charge_id, reason="admin",
                                       requested_by=f"admin:{request.user.pk}")
                queued += 1
            except BillableError as exc:
                self.message_user(request, f"{payment.charge_id}: {exc.message}",
                                  messages.WARNING)
        self.message_user(request, ngettext("%(count)d refund queued.", "%(count)d refunds queued.",
                                            queued) % {"count": queued})


@admin.register(RefundRequest)
class RefundRequestAdmin(ReadOnlyAdmin):
    list_display = ("payment", "state", "attempts", "next_attempt_at", "last_error",
                    "requested_by", "created_at", "done_at")
    list_filter = ("state",)
    search_fields = ("payment__charge_id",)
    list_select_related = ("payment",)
    actions = ("retry_now",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super(ReadOnlyAdmin, self).has_change_permission(request, obj)

    @admin.action(description=_("Retry the selected failed or pending refunds now"))
    def retry_now(self, request: HttpRequest, queryset: QuerySet[RefundRequest]) -> None:
        count = queryset.exclude(state=RefundRequest.State.DONE).update(
            state=RefundRequest.State.PENDING, next_attempt_at=timezone.now())
        self.message_user(request, ngettext("%(count)d refund scheduled.",
                                            "%(count)d refunds scheduled.", count)
                          % {"count": count})


@admin.register(StarSubscription)
class StarSubscriptionAdmin(ReadOnlyAdmin):
    list_display = ("telegram_user_id", "user", "sku", "state", "expires_at", "renewals",
                    "last_charge_id", "created_at")
    list_filter = ("state", "sku")
    search_fields = ("telegram_user_id", "first_charge_id", "last_charge_id")
    list_select_related = ("user",)


@admin.register(InboxUpdate)
class InboxUpdateAdmin(ReadOnlyAdmin):
    """The durable inbox: what arrived, what is pending, what failed (dead letters)."""

    list_display = ("update_id", "bot_id", "kind", "state", "attempts", "available_at",
                    "last_error", "created_at", "done_at")
    list_filter = ("state", "kind", "bot_id")
    search_fields = ("=update_id",)
    date_hierarchy = "created_at"
    actions = ("requeue",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super(ReadOnlyAdmin, self).has_change_permission(request, obj)

    @admin.action(description=_("Re-queue the selected updates (dead or pending) now"))
    def requeue(self, request: HttpRequest, queryset: QuerySet[InboxUpdate]) -> None:
        count = store.requeue(queryset.values_list("pk", flat=True))
        self.message_user(request, ngettext("%(count)d update re-queued.",
                                            "%(count)d updates re-queued.", count)
                          % {"count": count})
