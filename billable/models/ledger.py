"""The wallet (quota batches), the immutable ledger (transactions), holds and idempotency keys."""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from billable.exceptions import LedgerImmutable
from billable.models.base import CapsManager, CapsQuerySet, uuid7


def spendable_rule(now: Any) -> Q:
    """What makes a batch spendable at ``now`` — the one definition of the rule.

    ``ACTIVE``, units left, ``valid_from <= now`` and no expiry or one later than ``now``. The
    ORM path filters with it (:meth:`QuotaBatchQuerySet.spendable`), the SQL path compiles it
    (``billable.ledger.sql``) and the Python path evaluates it (:meth:`QuotaBatch.is_spendable`).
    """
    return Q(Q(expires_at__isnull=True) | Q(expires_at__gt=now),
             state=QuotaBatch.State.ACTIVE, remaining_quantity__gt=0, valid_from__lte=now)


_LOOKUPS: dict[str, Any] = {
    "exact": lambda a, b: a == b,
    "gt": lambda a, b: a is not None and a > b,
    "lte": lambda a, b: a is not None and a <= b,
    "isnull": lambda a, b: (a is None) == b,
}


def matches(instance: models.Model, rule: Q) -> bool:
    """Evaluate ``rule`` (fields of ``instance``, the lookups of :func:`spendable_rule`) in
    Python, without a query."""
    results = []
    for child in rule.children:
        if isinstance(child, Q):
            results.append(matches(instance, child))
        else:
            lookup, value = cast(tuple[str, Any], child)
            name, _, kind = lookup.partition("__")
            results.append(_LOOKUPS[kind or "exact"](getattr(instance, name), value))
    found = all(results) if rule.connector == Q.AND else any(results)
    return not found if rule.negated else found


class QuotaBatchQuerySet(CapsQuerySet):
    def spendable(self, now: Any = None) -> QuotaBatchQuerySet:
        """Batches that can be spent right now (:func:`spendable_rule`)."""
        return self.filter(spendable_rule(now or timezone.now()))


class QuotaBatch(models.Model):
    """A lot of product units held by a user, spent oldest-first (or soonest-expiring first)."""

    class State(models.TextChoices):
        ACTIVE = "ACTIVE", "Active"
        EXHAUSTED = "EXHAUSTED", "Exhausted"
        EXPIRED = "EXPIRED", "Expired"
        REVOKED = "REVOKED", "Revoked"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                             related_name="quota_batches")
    product = models.ForeignKey("billable.Product", on_delete=models.PROTECT,
                                related_name="quota_batches")
    source_offer = models.ForeignKey("billable.Offer", on_delete=models.PROTECT, null=True,
                                     blank=True, related_name="quota_batches")
    order_item = models.ForeignKey("billable.OrderItem", on_delete=models.PROTECT, null=True,
                                   blank=True, related_name="quota_batches")
    initial_quantity = models.PositiveIntegerField()
    remaining_quantity = models.PositiveIntegerField()
    valid_from = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)

    objects = models.Manager.from_queryset(QuotaBatchQuerySet)()

    class Meta:
        db_table = "billable_quota_batches"
        ordering = ["created_at", "id"]
        verbose_name_plural = "quota batches"
        constraints = [
            models.CheckConstraint(
                condition=Q(remaining_quantity__gte=0)
                & Q(remaining_quantity__lte=F("initial_quantity")),
                name="billable_batch_remaining_within_initial",
            ),
        ]
        indexes = [
            # The wallet in the default consumption order: a consume reads its first
            # spendable batch straight from the index, however many the user holds.
            models.Index(fields=["user", "product", "state", "created_at", "id"],
                         name="billable_batch_wallet_idx"),
            models.Index(fields=["state", "expires_at"], name="billable_batch_expiry_idx"),
        ]

    def __str__(self) -> str:
        left = f"{self.remaining_quantity}/{self.initial_quantity}"
        return f"{self.product_id}: {left} ({self.state})"

    def is_spendable(self, now: Any = None) -> bool:
        """Whether this batch is spendable at ``now`` (:func:`spendable_rule`, no query)."""
        return matches(self, spendable_rule(now or timezone.now()))


class TransactionQuerySet(CapsQuerySet):
    """Ledger rows can be added, never changed or removed through the ORM."""

    def update(self, **kwargs: Any) -> int:
        raise LedgerImmutable()

    def delete(self) -> Any:
        raise LedgerImmutable()

    def bulk_update(self, *args: Any, **kwargs: Any) -> Any:
        raise LedgerImmutable()

    def _reassign_owner(self, user_id: Any) -> int:
        """Move whole ledgers to another account: used by the customer merge service only."""
        return super().update(user_id=user_id)


class Transaction(models.Model):
    """One immutable ledger row: a CREDIT or DEBIT of ``amount`` units against one batch."""

    class Direction(models.TextChoices):
        CREDIT = "CREDIT", "Credit"
        DEBIT = "DEBIT", "Debit"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                             related_name="billable_transactions")
    quota_batch = models.ForeignKey(QuotaBatch, on_delete=models.PROTECT,
                                    related_name="transactions")
    amount = models.PositiveIntegerField()
    direction = models.CharField(max_length=6, choices=Direction.choices)
    action_type = models.CharField(max_length=50)
    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT, null=True,
                                     blank=True)
    object_id = models.CharField(max_length=255, null=True, blank=True)
    related_object = GenericForeignKey("content_type", "object_id")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = models.Manager.from_queryset(TransactionQuerySet)()

    class Meta:
        db_table = "billable_transactions"
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0),
                                   name="billable_transaction_amount_gte_0"),
            models.CheckConstraint(condition=Q(direction__in=["CREDIT", "DEBIT"]),
                                   name="billable_transaction_direction_valid"),
        ]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="billable_txn_user_recent_idx"),
            models.Index(fields=["quota_batch", "direction"], name="billable_txn_batch_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.amount} ({self.action_type})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise LedgerImmutable()
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise LedgerImmutable()


class IdempotencyKey(models.Model):
    """One row per (user, key): the database constraint that makes retries safe.

    ``fingerprint`` describes the request (operation, product, amount, …) so a reused key with a
    different request is refused; ``result`` holds what the first request returned.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="billable_idempotency_keys")
    key = models.CharField(max_length=255)
    operation = models.CharField(max_length=20)
    fingerprint = models.CharField(max_length=64)
    result = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billable_idempotency_keys"
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="billable_idempotency_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.operation}:{self.key}"


class Reservation(models.Model):
    """A hold: units taken out of the spendable balance, later committed or released."""

    class State(models.TextChoices):
        HELD = "HELD", "Held"
        COMMITTED = "COMMITTED", "Committed"
        RELEASED = "RELEASED", "Released"
        EXPIRED = "EXPIRED", "Expired"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                             related_name="billable_reservations")
    product = models.ForeignKey("billable.Product", on_delete=models.PROTECT,
                                related_name="reservations")
    amount = models.PositiveIntegerField()
    committed_amount = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=10, choices=State.choices, default=State.HELD)
    action_type = models.CharField(max_length=50, default="usage")
    metadata = models.JSONField(default=dict, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(
        max_length=255, null=True, blank=True,
        help_text="The key the hold was placed with (empty: none); its DEBIT rows carry it in "
                  "their metadata, as a consumption's do.")

    objects = CapsManager()

    class Meta:
        db_table = "billable_reservations"
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="billable_hold_amount_gt_0"),
            models.CheckConstraint(condition=Q(committed_amount__lte=F("amount")),
                                   name="billable_hold_commit_within_amount"),
        ]
        indexes = [models.Index(fields=["state", "expires_at"], name="billable_hold_expiry_idx")]

    def __str__(self) -> str:
        return f"hold {self.amount} {self.product_id} ({self.state})"


class ReservationItem(models.Model):
    """How much of a hold was taken from one batch (a hold may span batches)."""

    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="items")
    quota_batch = models.ForeignKey(QuotaBatch, on_delete=models.PROTECT,
                                    related_name="reservation_items")
    amount = models.PositiveIntegerField()

    objects = CapsManager()

    class Meta:
        db_table = "billable_reservation_items"
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="billable_hold_item_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} from {self.quota_batch_id}"
