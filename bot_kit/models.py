"""Purchase-flow state of bot_kit: Telegram payments, the refund outbox and Stars subscriptions.

Tables are prefixed ``bot_kit_`` (the app label) so they are told apart from the engine's
``billable_`` tables at a glance. Orders, grants and the ledger stay in ``billable``; these rows
only remember what Telegram told us and what we still owe Telegram (refunds).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class StarSubscription(models.Model):
    """A Telegram Stars subscription of one user to one ``period`` offer.

    Created by the first (``is_first_recurring``) payment; every renewal charge extends the
    entitlement once through its own order. ``state`` mirrors Telegram's subscription updates.
    """

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        CANCELED = "canceled", "Canceled"
        FAILED = "failed", "Failed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                             related_name="bot_kit_star_subscriptions")
    telegram_user_id = models.BigIntegerField()
    sku = models.CharField(max_length=50)
    invoice_payload = models.CharField(max_length=128)
    first_charge_id = models.CharField(max_length=255)
    last_charge_id = models.CharField(max_length=255)
    state = models.CharField(max_length=20, choices=State.choices, default=State.ACTIVE)
    expires_at = models.DateTimeField(null=True, blank=True)
    renewals = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "bot_kit_star_subscriptions"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["telegram_user_id", "invoice_payload"],
                                    name="bot_kit_subscription_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.sku} for {self.telegram_user_id} ({self.state})"


class TelegramPayment(models.Model):
    """One ``successful_payment`` as Telegram reported it, recorded exactly once per charge.

    The UNIQUE ``charge_id`` is what makes confirmation exactly-once: the row is inserted in the
    same database transaction that pays the order and grants the products.
    """

    class Status(models.TextChoices):
        CONFIRMED = "confirmed", "Confirmed (order paid)"
        REJECTED = "rejected", "Rejected (to be refunded)"
        REFUNDED = "refunded", "Refunded"

    charge_id = models.CharField(max_length=255, unique=True)
    provider_charge_id = models.CharField(max_length=255, blank=True, default="")
    telegram_user_id = models.BigIntegerField()
    bot_id = models.BigIntegerField(
        null=True, blank=True,
        help_text="The bot that received the payment (and must refund it); empty: unknown.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True,
                             blank=True, related_name="bot_kit_payments")
    order = models.ForeignKey("billable.Order", on_delete=models.PROTECT, null=True, blank=True,
                              related_name="telegram_payments")
    subscription = models.ForeignKey(StarSubscription, on_delete=models.PROTECT, null=True,
                                     blank=True, related_name="payments")
    currency = models.CharField(max_length=10)
    total_amount = models.BigIntegerField(help_text="In the currency's smallest units.")
    invoice_payload = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=20, choices=Status.choices)
    reason = models.CharField(max_length=50, blank=True, default="",
                              help_text="Why a payment was rejected (a stable code).")
    is_recurring = models.BooleanField(default=False)
    is_first_recurring = models.BooleanField(default=False)
    subscription_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    refunded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "bot_kit_telegram_payments"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["telegram_user_id"], name="bot_kit_payment_tg_user_idx")]

    def __str__(self) -> str:
        return f"{self.charge_id} ({self.status})"


class RefundRequest(models.Model):
    """The durable outbox row of one ``refundStarPayment`` call (one per payment).

    A worker picks rows whose ``next_attempt_at`` is due, calls the Bot API outside any
    transaction and records the outcome; rows survive restarts and are retried with backoff.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    payment = models.OneToOneField(TelegramPayment, on_delete=models.PROTECT,
                                   related_name="refund_request")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    claimed_by = models.CharField(max_length=64, blank=True, default="",
                                  help_text="Lease token of the worker calling Telegram now.")
    reason = models.CharField(max_length=255, blank=True, default="")
    requested_by = models.CharField(max_length=64, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "bot_kit_refund_requests"
        ordering = ["next_attempt_at", "id"]
        indexes = [models.Index(fields=["state", "next_attempt_at"],
                                name="bot_kit_refund_due_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(state__in=["pending", "done", "failed"]),
                                   name="bot_kit_refund_state_valid"),
        ]

    def __str__(self) -> str:
        return f"refund of {self.payment_id} ({self.state})"


class InboxUpdate(models.Model):
    """One Telegram update, committed before Telegram is told it arrived (the durable inbox).

    The webhook view and the polling loop insert the raw update (UNIQUE per bot and
    ``update_id``, so a redelivery is a no-op) and only then acknowledge it; workers claim due
    rows with a lease (``available_at`` moved ahead, ``claimed_by`` set), renew the lease while
    the handler runs, and mark the row ``done`` — or ``dead`` after too many failed attempts
    (visible and re-queueable in the admin).
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        DEAD = "dead", "Dead (needs a look)"

    bot_id = models.BigIntegerField()
    update_id = models.BigIntegerField()
    kind = models.CharField(max_length=40, blank=True, default="",
                            help_text="The update type (message, pre_checkout_query …).")
    payload = models.JSONField(help_text="The update as Telegram sent it.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    available_at = models.DateTimeField(default=timezone.now,
                                        help_text="Due time, or the end of the current lease.")
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "bot_kit_inbox"
        ordering = ["available_at", "id"]
        verbose_name = "inbox update"
        indexes = [models.Index(fields=["state", "available_at"], name="bot_kit_inbox_due_idx")]
        constraints = [
            models.UniqueConstraint(fields=["bot_id", "update_id"],
                                    name="bot_kit_inbox_unique_update"),
            models.CheckConstraint(condition=Q(state__in=["pending", "done", "dead"]),
                                   name="bot_kit_inbox_state_valid"),
        ]

    def __str__(self) -> str:
        return f"update {self.update_id} of bot {self.bot_id} ({self.state})"


__all__ = ["InboxUpdate", "RefundRequest", "StarSubscription", "TelegramPayment"]
