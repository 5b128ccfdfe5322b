"""Catalog: products (what a user can hold) and offers (what a user can buy)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billable.models.base import CapsQuerySet, normalize_key

STARS_CURRENCY = "XTR"


def product_key_conflict_message(key: str) -> str:
    return f"Conflict: '{key}' is already used as an Offer SKU."


def sku_conflict_message(sku: str) -> str:
    return f"Conflict: '{sku}' is already used as a Product Key."


def check_product_keys(keys: list[str]) -> None:
    """Refuse product keys already used as an offer SKU (the shared namespace)."""
    if not keys:
        return
    taken = Offer.objects.filter(sku__in=keys).values_list("sku", flat=True).first()
    if taken:
        raise ValidationError({"product_key": product_key_conflict_message(taken)})


def check_skus(keys: list[str]) -> None:
    """Refuse SKUs already used as a product key (the shared namespace)."""
    if not keys:
        return
    taken = Product.objects.filter(product_key__in=keys).values_list(
        "product_key", flat=True).first()
    if taken:
        raise ValidationError({"sku": sku_conflict_message(taken)})


class _NamespaceQuerySet(CapsQuerySet):
    """Keeps product keys and SKUs in one namespace on bulk writes as well as on ``save()``."""

    key_field: str = ""

    def _check_keys(self, keys: list[str]) -> None:
        raise NotImplementedError

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:
        objs = list(objs)
        for obj in objs:
            obj.normalize_keys()
        self._check_keys([getattr(o, self.key_field) for o in objs if getattr(o, self.key_field)])
        return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(self, objs: Any, fields: Any, *args: Any, **kwargs: Any) -> Any:
        objs = list(objs)
        for obj in objs:
            obj.normalize_keys()
        if self.key_field in fields:
            self._check_keys([getattr(o, self.key_field) for o in objs
                              if getattr(o, self.key_field)])
        return super().bulk_update(objs, fields, *args, **kwargs)

    def update(self, **kwargs: Any) -> int:
        value = kwargs.get(self.key_field)
        if isinstance(value, str) and value.strip():
            self._check_keys([normalize_key(value)])
        return super().update(**kwargs)


class ProductQuerySet(_NamespaceQuerySet):
    key_field = "product_key"

    def _check_keys(self, keys: list[str]) -> None:
        check_product_keys(keys)

    def active(self) -> ProductQuerySet:
        return self.filter(is_active=True)


class OfferQuerySet(_NamespaceQuerySet):
    key_field = "sku"

    def _check_keys(self, keys: list[str]) -> None:
        check_skus(keys)

    def active(self) -> OfferQuerySet:
        return self.filter(is_active=True)


class Product(models.Model):
    """Something a user can hold in the wallet: a counter, a period or an unlimited right."""

    class ProductType(models.TextChoices):
        PERIOD = "period", "Period"
        QUANTITY = "quantity", "Quantity"
        UNLIMITED = "unlimited", "Unlimited"

    product_key = models.CharField(max_length=50, unique=True, null=True, blank=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    product_type = models.CharField(max_length=20, choices=ProductType.choices, blank=True,
                                    default="")
    is_active = models.BooleanField(default=True)
    is_currency = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    metadata = models.JSONField(default=dict, blank=True)

    objects = models.Manager.from_queryset(ProductQuerySet)()

    class Meta:
        db_table = "billable_products"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(product_key__isnull=True) | ~Q(product_key=""),
                name="billable_product_key_not_blank",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.product_key})" if self.product_key else self.name

    @property
    def is_entitlement(self) -> bool:
        """Period and unlimited products grant access; consuming never depletes them."""
        return self.product_type in (self.ProductType.PERIOD, self.ProductType.UNLIMITED)

    def normalize_keys(self) -> None:
        key = normalize_key(self.product_key)
        self.product_key = key or None

    def clean(self) -> None:
        self.normalize_keys()
        check_product_keys([self.product_key] if self.product_key else [])

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.clean()
        super().save(*args, **kwargs)


class Offer(models.Model):
    """A sellable bundle of products at a price in one currency."""

    sku = models.CharField(max_length=50, unique=True)
    name = models.CharField(max_length=255)
    price = models.DecimalField(max_digits=20, decimal_places=2, default=Decimal("0.00"))
    currency = models.CharField(max_length=50, default="USD")
    image = models.URLField(max_length=500, blank=True, null=True)
    description = models.TextField(blank=True, default="")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    metadata = models.JSONField(default=dict, blank=True)

    objects = models.Manager.from_queryset(OfferQuerySet)()

    class Meta:
        db_table = "billable_offers"
        ordering = ["sku"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=0), name="billable_offer_price_gte_0"),
            models.CheckConstraint(condition=~Q(sku=""), name="billable_offer_sku_not_blank"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"

    def normalize_keys(self) -> None:
        self.sku = normalize_key(self.sku) or ""
        self.currency = (self.currency or "").strip().upper()

    def clean(self) -> None:
        self.normalize_keys()
        if not self.sku:
            raise ValidationError({"sku": "SKU must not be empty."})
        if not self.currency:
            from billable.conf import billable_settings

            self.currency = str(billable_settings.CURRENCY).upper()
        if self.price is not None:
            price = Decimal(str(self.price))
            if price < 0:
                raise ValidationError({"price": "Price must not be negative."})
            if self.currency == STARS_CURRENCY and price != price.to_integral_value():
                raise ValidationError(
                    {"price": "Prices in Telegram Stars (XTR) must be whole numbers."}
                )
        check_skus([self.sku])

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.clean()
        super().save(*args, **kwargs)


class OfferItem(models.Model):
    """One product inside an offer, with a quantity and an optional validity period."""

    class PeriodUnit(models.TextChoices):
        HOURS = "hours", "Hours"
        DAYS = "days", "Days"
        MONTHS = "months", "Months"
        YEARS = "years", "Years"
        FOREVER = "forever", "Forever"

    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="offer_items")
    quantity = models.PositiveIntegerField(default=1)
    period_unit = models.CharField(max_length=10, choices=PeriodUnit.choices,
                                   default=PeriodUnit.FOREVER)
    period_value = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        db_table = "billable_offer_items"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0),
                                   name="billable_offer_item_quantity_gt_0"),
            models.CheckConstraint(
                condition=Q(period_value__isnull=True) | Q(period_value__gt=0),
                name="billable_offer_item_period_value_gt_0",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.product_id} ({self.period_unit})"
