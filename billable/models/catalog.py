"""Catalog: products (what a user can hold) and offers (what a user can buy)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connections, models, router, transaction
from django.db.models import Q
from django.utils import timezone

from billable.conf import billable_settings
from billable.models.base import CapsManager, CapsQuerySet, normalize_key

STARS_CURRENCY = "XTR"
#: Longest single period: an offer item's, or an order line's ``period × quantity``.
MAX_PERIOD_YEARS = 1000
_MAX_PERIOD_VALUE = {"hours": MAX_PERIOD_YEARS * 366 * 24, "days": MAX_PERIOD_YEARS * 366,
                     "months": MAX_PERIOD_YEARS * 12, "years": MAX_PERIOD_YEARS}
#: Digits the price column holds (``Decimal(20, 2)``): whole part and fraction.
PRICE_PLACES = 2
PRICE_LIMIT = Decimal(10) ** (20 - PRICE_PLACES)


#: ``translations`` of a product or offer: ``{"ru": {"name": "…", "description": "…"}}``.
TRANSLATED_FIELDS = ("name", "description")


def check_translations(value: Any) -> dict[str, dict[str, str]]:
    """A ``translations`` value as stored: ``{language: {"name"|"description": text}}``.

    Language codes are normalized (``"ru-RU"`` → ``"ru"``); empty texts are dropped. Raises
    ``ValidationError`` for any other shape.
    """
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ValidationError({"translations": _TRANSLATIONS_SHAPE})
    cleaned: dict[str, dict[str, str]] = {}
    for lang, texts in value.items():
        code = str(lang).replace("_", "-").split("-")[0].strip().lower()
        if not code or len(code) > 10 or not code.isalpha() or not isinstance(texts, dict):
            raise ValidationError({"translations": _TRANSLATIONS_SHAPE})
        kept = {}
        for field, text in texts.items():
            if field not in TRANSLATED_FIELDS or not isinstance(text, str):
                raise ValidationError({"translations": _TRANSLATIONS_SHAPE})
            if text.strip():
                kept[field] = text.strip()
        if kept:
            cleaned[code] = kept
    return cleaned


_TRANSLATIONS_SHAPE = ('Translations must look like {"ru": {"name": "…", "description": "…"}}: '
                       "a language code, then name and/or description texts.")


class Localized:
    """``localized_name(lang)`` / ``localized_description(lang)`` for models with
    ``name``, ``description`` and ``translations``: the text in ``lang``, else the default
    language's (the plain fields), never blank."""

    name: str
    description: str
    translations: Any

    def _translated(self, field: str, lang: str | None) -> str:
        code = str(lang or "").replace("_", "-").split("-")[0].strip().lower()
        texts = (self.translations or {}).get(code) if code else None
        value = texts.get(field, "") if isinstance(texts, dict) else ""
        return str(value).strip()

    def localized_name(self, lang: str | None) -> str:
        """The name in ``lang`` (falls back to ``name``, then to the key / SKU)."""
        return (self._translated("name", lang) or self.name
                or str(getattr(self, "product_key", None) or getattr(self, "sku", "") or ""))

    def localized_description(self, lang: str | None) -> str:
        """The description in ``lang``; else the default one; else the localized name."""
        return (self._translated("description", lang)
                or (self.description if not self._translated("name", lang) else "")
                or self.localized_name(lang))


def span_allowed(unit: str, value: int | None) -> bool:
    """True when a period of ``value`` ``unit`` lasts at most :data:`MAX_PERIOD_YEARS` years."""
    if unit == "forever" or value is None:
        return True
    return unit in _MAX_PERIOD_VALUE and 0 < value <= _MAX_PERIOD_VALUE[unit]


def price_problem(value: Any, currency: str) -> str | None:
    """Why ``value`` cannot be stored as a price in ``currency`` exactly, or ``None``.

    Refuses what the ``Decimal(20, 2)`` column would round or overflow (``9.999`` would
    silently become ``10.00``), negatives, non-finite values, and fractions of Telegram Stars.
    """
    try:
        price = Decimal(str(value))
    except (ArithmeticError, ValueError):
        return "Price must be a number."
    if not price.is_finite():
        return "Price must be a finite number."
    if price < 0:
        return "Price must not be negative."
    if price >= PRICE_LIMIT:
        return f"Price must be less than {PRICE_LIMIT}."
    if price != price.quantize(Decimal(1).scaleb(-PRICE_PLACES), rounding=ROUND_DOWN):
        return f"Price must have at most {PRICE_PLACES} decimal places (got {price})."
    if currency == STARS_CURRENCY and price != price.to_integral_value():
        return "Prices in Telegram Stars (XTR) must be whole numbers."
    return None


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


#: Prefix of the advisory-lock ids that guard the shared product-key / SKU namespace.
_NAMESPACE_LOCK = b"billable.catalog.key:"


def lock_catalog_keys(keys: Iterable[str], using: str) -> None:
    """Serialise the writers of the same product key / SKU until their transaction ends.

    The shared-namespace check reads the other table and the write follows: two transactions
    writing ``X`` as a product key and as an SKU at once would both pass their check. On
    PostgreSQL each writer first takes a transaction-level advisory lock per key, in ascending
    order (so two writers of several keys queue instead of deadlocking), and checks after it;
    SQLite runs one writer at a time anyway. Call inside ``transaction.atomic(using=using)``.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    ids = sorted({int.from_bytes(hashlib.sha256(_NAMESPACE_LOCK + key.encode()).digest()[:8],
                                 "big", signed=True) for key in keys if key})
    if ids:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(x) FROM unnest(%s::bigint[]) AS x",
                           [ids])


def check_created_at(value: Any) -> None:
    """Refuse a creation time that cannot be stored and read back (outside years 1–9999 in UTC).

    ``0001-01-01T00:00+05:00`` is year 0 in UTC: PostgreSQL stores it, but Python cannot read
    it back, and every later read of the row would fail.
    """
    if isinstance(value, datetime) and value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValidationError(
                {"created_at": "Date is out of range (years 1 to 9999, in UTC)."}) from None


def locked_save(obj: Any, key_field: str, save: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> None:
    """``clean()`` and ``save`` a product or offer with its key locked in between, in one
    transaction (the shared namespace, :func:`lock_catalog_keys`)."""
    using = kwargs.get("using") or router.db_for_write(type(obj), instance=obj)
    with transaction.atomic(using=using):
        obj.normalize_keys()
        key = getattr(obj, key_field)
        lock_catalog_keys([key] if key else [], using)
        obj.clean()
        save(*args, **kwargs)


class _NamespaceQuerySet(CapsQuerySet):
    """Keeps product keys and SKUs in one namespace on bulk writes as well as on ``save()``."""

    key_field: str = ""

    def _check_keys(self, keys: list[str]) -> None:
        raise NotImplementedError

    def _check_rows(self, objs: list[Any]) -> None:
        """Per-row model rules that must hold on bulk writes too."""

    def _locked_check(self, keys: list[str]) -> None:
        """Lock ``keys`` (see :func:`lock_catalog_keys`), then check the namespace."""
        lock_catalog_keys(keys, self.db)
        self._check_keys(keys)

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:
        objs = list(objs)
        for obj in objs:
            obj.normalize_keys()
        self._check_rows(objs)
        with transaction.atomic(using=self.db):
            self._locked_check([getattr(o, self.key_field) for o in objs
                                if getattr(o, self.key_field)])
            return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(self, objs: Any, fields: Any, *args: Any, **kwargs: Any) -> Any:
        objs = list(objs)
        for obj in objs:
            obj.normalize_keys()
        self._check_rows(objs)
        with transaction.atomic(using=self.db):
            if self.key_field in fields:
                self._locked_check([getattr(o, self.key_field) for o in objs
                                    if getattr(o, self.key_field)])
            return super().bulk_update(objs, fields, *args, **kwargs)

    def update(self, **kwargs: Any) -> int:
        value = kwargs.get(self.key_field)
        if not (isinstance(value, str) and value.strip()):
            return super().update(**kwargs)
        with transaction.atomic(using=self.db):
            self._locked_check([normalize_key(value)])
            return super().update(**kwargs)


class ProductQuerySet(_NamespaceQuerySet):
    key_field = "product_key"

    def _check_keys(self, keys: list[str]) -> None:
        check_product_keys(keys)

    def _check_rows(self, objs: list[Any]) -> None:
        for obj in objs:
            obj.check_currency()

    def active(self) -> ProductQuerySet:
        return self.filter(is_active=True)


class OfferQuerySet(_NamespaceQuerySet):
    key_field = "sku"

    def _check_keys(self, keys: list[str]) -> None:
        check_skus(keys)

    def _check_rows(self, objs: list[Any]) -> None:
        for obj in objs:
            obj.check_price()

    def active(self) -> OfferQuerySet:
        return self.filter(is_active=True)


class Product(Localized, models.Model):
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
    translations = models.JSONField(
        default=dict, blank=True,
        help_text='Name and description per language: {"ru": {"name": "…", "description": "…"}}.')

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
        self.translations = check_translations(self.translations)
        self.check_currency()
        check_created_at(self.created_at)
        check_product_keys([self.product_key] if self.product_key else [])

    def check_currency(self) -> None:
        """A currency must be a spendable quantity: ``period`` / ``unlimited`` cannot be one.

        Exchanging spends units of the currency; an entitlement has none to spend (consuming
        it takes 0), so it would make every exchange free.
        """
        if self.is_currency and self.is_entitlement:
            raise ValidationError({"is_currency": (
                f"A {self.product_type} product cannot be a currency: only quantity products "
                "can be spent in exchanges.")})

    def save(self, *args: Any, **kwargs: Any) -> None:
        locked_save(self, "product_key", super().save, args, kwargs)


def default_currency() -> str:
    """``BILLABLE_CURRENCY``, read when an offer is created without a currency."""
    return str(billable_settings.CURRENCY).upper()


#: Extra checks run by ``Offer.clean`` (and so on every save): callables that raise
#: ``ValidationError``. bot_kit adds the Telegram Stars subscription price cap here.
OFFER_VALIDATORS: list[Any] = []


class Offer(Localized, models.Model):
    """A sellable bundle of products at a price in one currency."""

    sku = models.CharField(max_length=50, unique=True)
    name = models.CharField(max_length=255)
    price = models.DecimalField(max_digits=20, decimal_places=2, default=Decimal("0.00"))
    currency = models.CharField(max_length=50, default=default_currency)
    image = models.URLField(max_length=500, blank=True, null=True)
    description = models.TextField(blank=True, default="")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    metadata = models.JSONField(default=dict, blank=True)
    translations = models.JSONField(
        default=dict, blank=True,
        help_text='Name and description per language: {"ru": {"name": "…", "description": "…"}}.')

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
            self.currency = default_currency()
        self.translations = check_translations(self.translations)
        self.check_price()
        check_created_at(self.created_at)
        check_skus([self.sku])
        for validator in OFFER_VALIDATORS:
            validator(self)

    def check_price(self) -> None:
        """Refuse a price the column would round (``9.999``) or that the currency forbids."""
        if self.price is None:
            raise ValidationError({"price": "Price is required."})
        problem = price_problem(self.price, self.currency)
        if problem:
            raise ValidationError({"price": problem})

    def save(self, *args: Any, **kwargs: Any) -> None:
        locked_save(self, "sku", super().save, args, kwargs)


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

    objects = CapsManager()

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

    def clean(self) -> None:
        if self.period_unit not in self.PeriodUnit.values:
            raise ValidationError({"period_unit": f"Unknown period unit: {self.period_unit!r}."})
        if not span_allowed(self.period_unit, self.period_value):
            raise ValidationError({"period_value": (
                f"A period may last at most {MAX_PERIOD_YEARS} years.")})

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.clean()
        super().save(*args, **kwargs)
