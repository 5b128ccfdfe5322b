"""Gifts: an offer one customer paid for and another claims through a deep-link token."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billable.models.base import CapsManager


class Gift(models.Model):
    """``pending`` (awaiting payment) → ``ready`` → ``claimed`` once; or ``expired`` /
    ``refunded`` when nobody claimed it in time. Paying the gift's order grants nothing to the
    buyer: the claim grants the order line's snapshot to the claimer."""

    class Status(models.TextChoices):
        PENDING = "pending", "Awaiting payment"
        READY = "ready", "Ready to claim"
        CLAIMED = "claimed", "Claimed"
        EXPIRED = "expired", "Expired"
        REFUNDED = "refunded", "Refunded"
        CANCELLED = "cancelled", "Cancelled"

    token = models.CharField(max_length=32, unique=True)
    buyer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                              related_name="billable_gifts_bought")
    offer = models.ForeignKey("billable.Offer", on_delete=models.PROTECT, related_name="gifts")
    order = models.OneToOneField("billable.Order", on_delete=models.PROTECT,
                                 related_name="gift")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   null=True, blank=True, related_name="billable_gifts_claimed")
    claimed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = CapsManager()

    class Meta:
        db_table = "billable_gifts"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="claimed") | Q(claimed_by__isnull=False),
                name="billable_gift_claimed_has_claimer"),
            models.CheckConstraint(condition=~Q(claimed_by=models.F("buyer")),
                                   name="billable_gift_not_self_claimed"),
        ]
        indexes = [models.Index(fields=["status", "expires_at"],
                                name="billable_gift_status_idx")]

    def __str__(self) -> str:
        return f"Gift {self.token[:6]}… ({self.status})"


__all__ = ["Gift"]
