"""Promo codes and their uses: a code grants an offer or discounts one, within its limits.

The limits live in the database: ``uses_count <= max_uses`` and ``max_uses >= 1`` (empty:
unlimited) are CHECK constraints and the counter moves only by a locked update; "once per
customer" is a UNIQUE ``(code, identity)`` row per hashed identity (the account ``user:<id>``
and every external identity, hashed like trials), so it survives customer merges. The rules
between fields (what each kind needs) are :meth:`PromoCode.clean`, which every way of creating
a code in billable runs (admin forms, ``billable.growth.codes``, the command).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billable.models.base import CapsManager

#: Largest ``max_uses`` (PostgreSQL's integer column; SQLite would store more).
MAX_USES = 2_147_483_647


class PromoCode(models.Model):
    """A case-insensitive code (stored upper-case) with its reward and its limits."""

    class Kind(models.TextChoices):
        GRANT = "grant", "Grant an offer"
        PERCENT = "percent", "Percent off an offer"
        FIXED = "fixed", "Fixed amount off an offer"

    code = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.GRANT)
    offer = models.ForeignKey(
        "billable.Offer", on_delete=models.PROTECT, null=True, blank=True,
        related_name="promo_codes",
        help_text="Grant codes: the offer granted. Discount codes: the only offer discounted "
                  "(empty: any offer).")
    percent_off = models.PositiveSmallIntegerField(
        null=True, blank=True,
        validators=[MinValueValidator(1, "percent_off must be between 1 and 100."),
                    MaxValueValidator(100, "percent_off must be between 1 and 100.")])
    amount_off = models.DecimalField(
        max_digits=20, decimal_places=2, null=True, blank=True,
        validators=[MinValueValidator(Decimal("0.01"), "amount_off must be positive.")])
    currency = models.CharField(
        max_length=50, blank=True, default="",
        help_text="Fixed discounts: the currency of amount_off (empty: the offer's currency).")
    max_uses = models.PositiveIntegerField(
        null=True, blank=True, help_text="Total uses allowed (empty: unlimited).",
        validators=[MinValueValidator(1, "max_uses must be at least 1 (empty: unlimited)."),
                    MaxValueValidator(MAX_USES, f"max_uses must be at most {MAX_USES}.")])
    uses_count = models.PositiveIntegerField(default=0, editable=False)
    once_per_customer = models.BooleanField(default=True)
    first_time_only = models.BooleanField(default=False,
                                          help_text="Only customers without a paid order.")
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    batch = models.CharField(max_length=50, blank=True, default="",
                             help_text="Label of the bulk generation that created the code.")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = CapsManager()

    class Meta:
        db_table = "billable_promo_codes"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_uses__isnull=True) | Q(uses_count__lte=models.F("max_uses")),
                name="billable_promo_uses_within_limit"),
            models.CheckConstraint(
                condition=Q(percent_off__isnull=True) | Q(percent_off__gte=1,
                                                          percent_off__lte=100),
                name="billable_promo_percent_range"),
            models.CheckConstraint(condition=Q(amount_off__isnull=True) | Q(amount_off__gt=0),
                                   name="billable_promo_amount_gt_0"),
            models.CheckConstraint(condition=Q(max_uses__isnull=True) | Q(max_uses__gte=1),
                                   name="billable_promo_max_uses_gte_1"),
        ]

    def __str__(self) -> str:
        return self.code

    def clean(self) -> None:
        """The rules between fields: what each kind needs (and takes), a window that opens."""
        errors: dict[str, str] = {}
        if self.kind == self.Kind.GRANT and self.offer_id is None:
            errors["offer"] = "A grant code needs an offer."
        if self.kind == self.Kind.PERCENT and self.percent_off is None:
            errors["percent_off"] = "A percent code needs percent_off."
        if self.kind != self.Kind.PERCENT and self.percent_off is not None:
            errors["percent_off"] = "Only percent codes take percent_off."
        if self.kind == self.Kind.FIXED and self.amount_off is None:
            errors["amount_off"] = "A fixed code needs amount_off."
        if self.kind != self.Kind.FIXED and self.amount_off is not None:
            errors["amount_off"] = "Only fixed codes take amount_off."
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            errors["valid_until"] = "valid_until must be after valid_from."
        if errors:
            raise ValidationError(errors)

    def save(self, *args: object, **kwargs: object) -> None:
        self.code = (self.code or "").strip().upper()
        self.currency = (self.currency or "").strip().upper()
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    @property
    def is_discount(self) -> bool:
        return self.kind != self.Kind.GRANT


class PromoRedemption(models.Model):
    """One use of a code by a customer: ``reserved`` (a discounted order awaits payment) →
    ``redeemed``; or ``released`` (the order was never paid: the use is given back)."""

    class Status(models.TextChoices):
        RESERVED = "reserved", "Reserved"
        REDEEMED = "redeemed", "Redeemed"
        RELEASED = "released", "Released"

    promo = models.ForeignKey(PromoCode, on_delete=models.PROTECT, related_name="redemptions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                             related_name="billable_promo_redemptions")
    status = models.CharField(max_length=10, choices=Status.choices,
                              default=Status.RESERVED)
    order = models.OneToOneField("billable.Order", on_delete=models.PROTECT, null=True,
                                 blank=True, related_name="promo_redemption")
    offer = models.ForeignKey("billable.Offer", on_delete=models.PROTECT,
                              related_name="promo_redemptions")
    list_price = models.DecimalField(max_digits=20, decimal_places=2, default=0)
    price = models.DecimalField(max_digits=20, decimal_places=2, default=0)
    currency = models.CharField(max_length=50, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    redeemed_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)

    objects = CapsManager()

    class Meta:
        db_table = "billable_promo_redemptions"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"],
                                name="billable_promo_red_status_idx")]

    def __str__(self) -> str:
        return f"{self.promo_id} by user {self.user_id} ({self.status})"

    @property
    def discount(self) -> object:
        return self.list_price - self.price


class PromoIdentityUse(models.Model):
    """The race guard of "once per customer": one row per (code, hashed identity)."""

    promo = models.ForeignKey(PromoCode, on_delete=models.PROTECT, related_name="identity_uses")
    redemption = models.ForeignKey(PromoRedemption, on_delete=models.CASCADE,
                                   related_name="identity_uses")
    identity_type = models.CharField(max_length=50)
    identity_hash = models.CharField(max_length=64)

    class Meta:
        db_table = "billable_promo_identity_uses"
        constraints = [
            models.UniqueConstraint(fields=["promo", "identity_type", "identity_hash"],
                                    name="billable_promo_identity_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.promo_id} {self.identity_type}:{self.identity_hash[:12]}…"


__all__ = ["PromoCode", "PromoIdentityUse", "PromoRedemption"]
