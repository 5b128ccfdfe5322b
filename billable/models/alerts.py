"""Alerts: per-product low-balance and expiry rules, the notices sent, and per-user opt-out.

A notice is unique per ``(kind, batch)``: a low-balance notice is keyed on the customer's most
recent grant of the product, an expiry notice on the expiring batch. Whatever the number of
scans, a crossing of one batch is noticed once.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billable.models.base import CapsManager


class ProductAlert(models.Model):
    """The alert rule of one product."""

    product = models.OneToOneField("billable.Product", on_delete=models.CASCADE,
                                   related_name="alert_rule")
    low_balance_units = models.PositiveIntegerField(
        null=True, blank=True, help_text="Alert when the balance is at or below this many units.")
    low_balance_percent = models.PositiveSmallIntegerField(
        null=True, blank=True,
        help_text="Alert when the balance is at or below this percent of the last grant.")
    expiry_days = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Remind this many days before a batch expires.")
    buy_offer = models.ForeignKey("billable.Offer", on_delete=models.SET_NULL, null=True,
                                  blank=True, related_name="+",
                                  help_text="Offer of the alert's buy button.")
    is_active = models.BooleanField(default=True)

    objects = CapsManager()

    class Meta:
        db_table = "billable_product_alerts"
        constraints = [
            models.CheckConstraint(
                condition=Q(low_balance_percent__isnull=True) | Q(low_balance_percent__lte=100),
                name="billable_alert_percent_lte_100"),
        ]

    def __str__(self) -> str:
        return f"Alerts of {self.product_id}"


class AlertNotice(models.Model):
    """One alert for one batch; ``delivery`` tracks the bot message (sent at most once)."""

    class Kind(models.TextChoices):
        LOW_BALANCE = "low_balance", "Low balance"
        EXPIRING = "expiring", "Expires soon"

    class Delivery(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        SKIPPED = "skipped", "Skipped (opted out or no chat)"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="billable_alert_notices")
    product = models.ForeignKey("billable.Product", on_delete=models.CASCADE,
                                related_name="alert_notices")
    batch = models.ForeignKey("billable.QuotaBatch", on_delete=models.CASCADE,
                              related_name="alert_notices")
    balance = models.IntegerField(default=0)
    threshold = models.IntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    delivery = models.CharField(max_length=10, choices=Delivery.choices,
                                default=Delivery.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    objects = CapsManager()

    class Meta:
        db_table = "billable_alert_notices"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "batch"], name="billable_alert_once_per_batch"),
        ]
        indexes = [models.Index(fields=["delivery", "created_at"],
                                name="billable_alert_delivery_idx")]

    def __str__(self) -> str:
        return f"{self.kind} for user {self.user_id} ({self.delivery})"


class NotificationPreference(models.Model):
    """A customer's choice about alert messages (absent row: alerts on)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="billable_notification_preference")
    alerts_enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billable_notification_preferences"

    def __str__(self) -> str:
        return f"user {self.user_id}: alerts {'on' if self.alerts_enabled else 'off'}"


__all__ = ["AlertNotice", "NotificationPreference", "ProductAlert"]
