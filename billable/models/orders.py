"""Orders and their lines: what a user bought, at which catalog price, and how it was paid."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billable.models.base import CapsManager


class Order(models.Model):
    """A purchase: ``pending`` → ``paid`` exactly once, then possibly ``refunded``."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PAID = "paid", "Paid"
        CANCELLED = "cancelled", "Cancelled"
        REFUNDED = "refunded", "Refunded"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                             related_name="billable_orders")
    total_amount = models.DecimalField(max_digits=20, decimal_places=2,
                                       default=Decimal("0.00"))
    currency = models.CharField(max_length=50, default="USD")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    payment_method = models.CharField(max_length=50, blank=True, default="")
    payment_id = models.CharField(max_length=255, null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    paid_at = models.DateTimeField(null=True, blank=True)

    objects = CapsManager()

    class Meta:
        db_table = "billable_orders"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["payment_method", "payment_id"],
                condition=Q(payment_id__isnull=False),
                name="billable_order_payment_unique",
            ),
            models.CheckConstraint(condition=Q(total_amount__gte=0),
                                   name="billable_order_total_gte_0"),
        ]
        indexes = [
            models.Index(fields=["user", "status"], name="billable_order_user_idx"),
            # the dashboard's "paid in the range" (migration 0013, built concurrently)
            models.Index(fields=["paid_at"], name="billable_order_paid_idx"),
        ]

    def __str__(self) -> str:
        return f"Order #{self.pk} ({self.status})"


class OrderItem(models.Model):
    """One line of an order: ``price`` is the catalog unit price and ``snapshot`` the offer's
    contents (products, quantities, periods) at the time the order was created."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    offer = models.ForeignKey("billable.Offer", on_delete=models.PROTECT,
                              related_name="order_items")
    quantity = models.PositiveIntegerField(default=1)
    price = models.DecimalField(max_digits=20, decimal_places=2)
    snapshot = models.JSONField(
        null=True, blank=True, editable=False,
        help_text="The offer's items when the order was created; payment grants exactly these.",
    )

    objects = CapsManager()

    class Meta:
        db_table = "billable_order_items"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0),
                                   name="billable_order_item_quantity_gt_0"),
            models.CheckConstraint(condition=Q(price__gte=0),
                                   name="billable_order_item_price_gte_0"),
        ]

    def __str__(self) -> str:
        price: Decimal | int = self.price
        if (self.order_id and self.order.currency == "XTR" and isinstance(price, Decimal)
                and price == price.to_integral_value()):
            price = int(price)  # Telegram Stars are whole
        return f"{self.quantity} × {self.offer_id} @ {price}"
