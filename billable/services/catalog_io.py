"""Catalog import/export (CSV) and the quick ``GET_<KEY>`` offer.

Pure functions, free of HTTP: the admin views are thin wrappers around them, and a management
command or an API endpoint can reuse them as they are.

Every write goes through the models' normal ``full_clean()`` + ``save()`` path, so CAPS
normalisation of keys/SKUs and the shared product-key/SKU namespace apply exactly as elsewhere.

Import semantics (see ``docs/admin.md``): a file is applied inside one database transaction.
By default invalid rows are skipped and reported while valid rows are applied (the published 0.2
behaviour); with ``strict=True`` any invalid row rolls the whole file back (all or nothing).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billable.conf import billable_settings
from billable.exceptions import InvalidAmount, InvalidInput, InvalidPrice
from billable.models import Offer, OfferItem, Product
from billable.models.base import normalize_key

PRODUCT_CSV_FIELDS: tuple[str, ...] = (
    "product_key", "name", "description", "product_type", "is_active", "is_currency",
    "created_at", "metadata",
)
OFFER_CSV_FIELDS: tuple[str, ...] = (
    "sku", "name", "price", "currency", "image", "description", "is_active", "created_at",
    "metadata",
)
OFFER_ITEM_CSV_FIELDS: tuple[str, ...] = ("product_key", "quantity", "period_unit", "period_value")
OFFER_CSV_HEADERS: tuple[str, ...] = OFFER_CSV_FIELDS + OFFER_ITEM_CSV_FIELDS

_TRUE = frozenset({"1", "true", "yes", "y", "on", "t"})
_FALSE = frozenset({"0", "false", "no", "n", "off", "f"})
_SKU_MAX = Offer._meta.get_field("sku").max_length or 50

Row = dict[str, str]
CsvSource = str | bytes | IO[str] | IO[bytes]


@dataclass
class ImportResult:
    """Outcome of one CSV import: counts, per-row errors and what was overwritten.

    ``applied`` is False when nothing was written (bad headers, or ``strict`` with errors).
    """

    created: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)
    links_overwritten: list[str] = field(default_factory=list)
    header_error: bool = False
    strict: bool = False

    @property
    def applied(self) -> bool:
        return not self.header_error and not (self.strict and self.errors)

    def summary(self) -> str:
        """One human sentence for the admin message."""
        if not self.applied:
            return f"Import aborted: {len(self.errors)} error(s); nothing was imported."
        return f"Import finished: {self.created} created, {self.updated} updated."


class _RowError(Exception):
    """A row (or offer group) cannot be imported; the message is shown to the admin."""


# -- reading and parsing -----------------------------------------------------------------------


def _decode(source: CsvSource) -> str:
    data: str | bytes = source if isinstance(source, (str, bytes)) else source.read()
    if isinstance(data, bytes):
        return data.decode("utf-8-sig")
    return data.removeprefix("\ufeff")


def _read_rows(source: CsvSource, headers: tuple[str, ...]) -> list[tuple[int, Row]]:
    """Rows as ``(line number, {header: stripped value})``; raises ``_RowError`` on bad input."""
    missing = f"CSV must have headers: {', '.join(headers)}"
    try:
        reader = csv.reader(io.StringIO(_decode(source)))
        names = [name.strip() for name in next(reader, [])]
        if sorted(names) != sorted(headers):
            raise _RowError(missing)
        rows = []
        for line, values in enumerate(reader, start=2):
            if not any(value.strip() for value in values):
                continue
            padded = [*values, *[""] * (len(names) - len(values))]
            rows.append((line, {n: v.strip() for n, v in zip(names, padded, strict=False)}))
        return rows
    except UnicodeDecodeError as exc:
        raise _RowError("The file must be a UTF-8 encoded CSV.") from exc
    except csv.Error as exc:
        raise _RowError(f"Malformed CSV: {exc}") from exc


def _parse_bool(value: str, name: str, *, default: bool) -> bool:
    if value == "":
        return default
    lowered = value.lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise _RowError(f"invalid {name} {value!r} (use true/false)")


def _parse_metadata(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value or "{}")
    except json.JSONDecodeError as exc:
        raise _RowError("invalid metadata JSON") from exc
    if not isinstance(parsed, dict):
        raise _RowError("invalid metadata JSON: must be an object")
    return parsed


def _parse_created_at(value: str) -> Any:
    if not value:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise _RowError(f"invalid created_at {value!r} (use ISO 8601)")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return parsed


def _parse_price(value: str) -> Decimal:
    if not value:
        raise _RowError("price is required")
    try:
        price = Decimal(value)
    except InvalidOperation as exc:
        raise _RowError(f"invalid price {value!r}") from exc
    if not price.is_finite() or price < 0:
        raise _RowError(f"invalid price {value!r}")
    return price


def _parse_positive_int(value: str, name: str, *, default: int | None) -> int | None:
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise _RowError(f"invalid {name} {value!r} (a positive whole number)") from exc
    if number <= 0:
        raise _RowError(f"invalid {name} {value!r} (a positive whole number)")
    return number


def _validation_text(exc: ValidationError) -> str:
    if not hasattr(exc, "error_dict"):
        return "; ".join(exc.messages)
    parts: list[str] = []
    for name, messages in exc.message_dict.items():
        prefix = "" if name == "__all__" else f"{name}: "
        parts.extend(prefix + message for message in messages)
    return "; ".join(parts)


def _save(obj: Product | Offer | OfferItem) -> None:
    """``full_clean()`` + ``save()`` inside a savepoint, turning refusals into ``_RowError``."""
    try:
        with transaction.atomic():
            obj.full_clean()
            obj.save()
    except ValidationError as exc:
        raise _RowError(_validation_text(exc)) from exc
    except IntegrityError as exc:
        raise _RowError("conflicts with existing data (unique constraint)") from exc


def _finish(result: ImportResult) -> ImportResult:
    if result.strict and result.errors:
        transaction.set_rollback(True)
        result.created = result.updated = 0
        result.links_overwritten = []
    return result


# -- products ----------------------------------------------------------------------------------


def export_products_csv(products: Iterable[Product] | None = None) -> str:
    """CSV text of ``products`` (all products when None), columns ``PRODUCT_CSV_FIELDS``."""
    items = Product.objects.order_by("pk") if products is None else products
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(PRODUCT_CSV_FIELDS)
    for product in items:
        writer.writerow([
            product.product_key or "", product.name, product.description, product.product_type,
            product.is_active, product.is_currency, product.created_at.isoformat(),
            json.dumps(product.metadata or {}, ensure_ascii=False),
        ])
    return buffer.getvalue()


def _apply_product_row(row: Row) -> bool:
    """Create or update one product from a row; True when created.

    Empty cells of typed columns keep the current value (the model default for a new row).
    """
    key = normalize_key(row["product_key"])
    if not key:
        raise _RowError("product_key is required")
    product_type = row["product_type"].lower()
    if product_type and product_type not in Product.ProductType.values:
        raise _RowError(f"invalid product_type {row['product_type']!r}")
    metadata = _parse_metadata(row["metadata"])
    created_at = _parse_created_at(row["created_at"])
    product = Product.objects.select_for_update().filter(product_key=key).first()
    created = product is None
    product = product or Product(product_key=key)
    product.name = row["name"] or product.name
    if not product.name:
        raise _RowError("name is required")
    product.description = row["description"]
    product.product_type = product_type or product.product_type
    product.is_active = _parse_bool(row["is_active"], "is_active", default=product.is_active)
    product.is_currency = _parse_bool(row["is_currency"], "is_currency",
                                      default=product.is_currency)
    product.metadata = metadata
    product.created_at = created_at or product.created_at
    _save(product)
    return created


def _open_import(source: CsvSource, fields: Any, *, strict: bool) -> tuple[ImportResult, Any]:
    """A fresh ``ImportResult`` and the file's rows, or ``None`` rows after a header error."""
    result = ImportResult(strict=strict)
    try:
        return result, _read_rows(source, fields)
    except _RowError as exc:
        result.header_error = True
        result.errors.append(str(exc))
        return result, None


def import_products_csv(source: CsvSource, *, strict: bool = False) -> ImportResult:
    """Upsert products by ``product_key`` (any case) from CSV; offers are never touched."""
    result, rows = _open_import(source, PRODUCT_CSV_FIELDS, strict=strict)
    if rows is None:
        return result
    seen: set[str] = set()
    with transaction.atomic():
        for line, row in rows:
            key = normalize_key(row["product_key"])
            try:
                if key and key in seen:
                    raise _RowError(f"duplicate product_key {key} in the file")
                seen.add(key)
                created = _apply_product_row(row)
            except _RowError as exc:
                result.errors.append(f"Row {line}: {exc}")
                continue
            result.created += created
            result.updated += not created
        return _finish(result)


# -- offers ------------------------------------------------------------------------------------


def export_offers_csv(offers: Iterable[Offer] | None = None) -> str:
    """CSV text of ``offers`` (all when None): one row per offer item, one bare row if none."""
    items = Offer.objects.order_by("pk") if offers is None else offers
    if isinstance(items, QuerySet):
        items = items.prefetch_related("items__product")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(OFFER_CSV_HEADERS)
    for offer in items:
        base = [
            offer.sku, offer.name, offer.price, offer.currency, offer.image or "",
            offer.description, offer.is_active, offer.created_at.isoformat(),
            json.dumps(offer.metadata or {}, ensure_ascii=False),
        ]
        lines = [
            [item.product.product_key or "", item.quantity, item.period_unit,
             "" if item.period_value is None else item.period_value]
            for item in offer.items.all()
        ]
        for line in lines or [["", "", "", ""]]:
            writer.writerow(base + line)
    return buffer.getvalue()


def _apply_offer_fields(sku: str, row: Row) -> tuple[Offer, bool]:
    price = _parse_price(row["price"])
    metadata = _parse_metadata(row["metadata"])
    created_at = _parse_created_at(row["created_at"])
    offer = Offer.objects.select_for_update().filter(sku=sku).first()
    created = offer is None
    offer = offer or Offer(sku=sku, currency="")
    offer.name = row["name"] or offer.name
    if not offer.name:
        raise _RowError("name is required")
    offer.price = price
    offer.currency = (row["currency"] or offer.currency or billable_settings.CURRENCY).upper()
    offer.image = row["image"] or None
    offer.description = row["description"]
    offer.is_active = _parse_bool(row["is_active"], "is_active", default=offer.is_active)
    offer.metadata = metadata
    offer.created_at = created_at or offer.created_at
    _save(offer)
    return offer, created


def _add_offer_item(offer: Offer, row: Row) -> None:
    key = normalize_key(row["product_key"])
    product = Product.objects.filter(product_key=key).first()
    if product is None:
        raise _RowError(f"product '{key}' not found; item of offer {offer.sku} skipped")
    unit = row["period_unit"].lower() or OfferItem.PeriodUnit.FOREVER
    if unit not in OfferItem.PeriodUnit.values:
        raise _RowError(f"invalid period_unit {row['period_unit']!r}")
    value = _parse_positive_int(row["period_value"], "period_value", default=None)
    if unit != OfferItem.PeriodUnit.FOREVER and value is None:
        raise _RowError(f"period_value is required for period_unit '{unit}'")
    quantity = _parse_positive_int(row["quantity"], "quantity", default=1) or 1
    _save(OfferItem(offer=offer, product=product, quantity=quantity, period_unit=unit,
                    period_value=value))


def _apply_offer_group(sku: str, group: list[tuple[int, Row]], result: ImportResult) -> bool:
    """Upsert one offer from its rows; items are replaced when any row names a product."""
    with transaction.atomic():
        offer, created = _apply_offer_fields(sku, group[0][1])
    if not any(row["product_key"] for _, row in group):
        return created
    offer.items.all().delete()
    result.links_overwritten.append(sku)
    for line, row in group:
        if not row["product_key"]:
            continue
        try:
            _add_offer_item(offer, row)
        except _RowError as exc:
            result.errors.append(f"Row {line}: {exc}")
    return created


def _group_by_sku(rows: list[tuple[int, Row]],
                  result: ImportResult) -> dict[str, list[tuple[int, Row]]]:
    groups: dict[str, list[tuple[int, Row]]] = {}
    for line, row in rows:
        sku = normalize_key(row["sku"])
        if not sku:
            result.errors.append(f"Row {line}: sku is required")
            continue
        groups.setdefault(sku, []).append((line, row))
    return groups


def import_offers_csv(source: CsvSource, *, strict: bool = False) -> ImportResult:
    """Upsert offers by ``sku`` (any case) from CSV, rows grouped by SKU (one per offer item).

    Offer fields come from the first row of each group. When any row of a group names a
    ``product_key`` the offer's items are replaced by the file's; otherwise they are kept.
    """
    result, rows = _open_import(source, OFFER_CSV_HEADERS, strict=strict)
    if rows is None:
        return result
    with transaction.atomic():
        for sku, group in _group_by_sku(rows, result).items():
            try:
                created = _apply_offer_group(sku, group, result)
            except _RowError as exc:
                result.errors.append(f"Offer {sku} (row {group[0][0]}): {exc}")
                continue
            result.created += created
            result.updated += not created
        return _finish(result)


# -- quick offer -------------------------------------------------------------------------------


def _free_sku(base: str) -> str:
    """``base``, else ``base_1``, ``base_2`` …: the first not used as a SKU or product key."""
    counter = 0
    while True:
        suffix = f"_{counter}" if counter else ""
        candidate = base[: _SKU_MAX - len(suffix)] + suffix
        taken = (Offer.objects.filter(sku=candidate).exists()
                 or Product.objects.filter(product_key=candidate).exists())
        if not taken:
            return candidate
        counter += 1


def _check_quick_offer(price: Any, quantity: Any, period_unit: str,
                       period_value: Any) -> Decimal:
    try:
        amount = Decimal(str(price))
    except InvalidOperation as exc:
        raise InvalidPrice(f"Invalid price: {price!r}") from exc
    if not amount.is_finite() or amount < 0:
        raise InvalidPrice(f"Invalid price: {price!r}")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise InvalidAmount("Quantity must be a positive integer")
    if period_unit not in OfferItem.PeriodUnit.values:
        raise InvalidInput(f"Unknown period unit: {period_unit!r}")
    needs_value = period_unit != OfferItem.PeriodUnit.FOREVER
    if needs_value and (not isinstance(period_value, int) or period_value <= 0):
        raise InvalidAmount("Period value must be a positive integer for a limited period")
    return amount


def create_quick_offer(product: Product, price: Any, *, currency: str | None = None,
                       quantity: int = 1, period_unit: str = OfferItem.PeriodUnit.FOREVER,
                       period_value: int | None = None) -> Offer:
    """Create an active offer ``GET_<KEY>`` (``_1``, ``_2`` … on collision) selling ``product``.

    The offer takes the product's name and description and holds one item. Raises
    ``InvalidPrice`` / ``InvalidAmount`` / ``InvalidInput`` for bad values.
    """
    amount = _check_quick_offer(price, quantity, period_unit, period_value)
    base = f"GET_{product.product_key or product.pk}"
    for _attempt in range(5):
        try:
            with transaction.atomic():
                offer = Offer(sku=_free_sku(base), name=product.name[:255], price=amount,
                              currency=currency or billable_settings.CURRENCY,
                              description=product.description)
                offer.save()
                OfferItem.objects.create(
                    offer=offer, product=product, quantity=quantity, period_unit=period_unit,
                    period_value=period_value if period_unit != "forever" else None,
                )
                return offer
        except ValidationError as exc:
            raise InvalidPrice(_validation_text(exc)) from exc
        except IntegrityError:
            continue  # a concurrent writer took the SKU: pick the next free one
    raise InvalidInput(f"Could not allocate a free SKU for {base}")


__all__ = [
    "OFFER_CSV_FIELDS",
    "OFFER_CSV_HEADERS",
    "OFFER_ITEM_CSV_FIELDS",
    "PRODUCT_CSV_FIELDS",
    "ImportResult",
    "create_quick_offer",
    "export_offers_csv",
    "export_products_csv",
    "import_offers_csv",
    "import_products_csv",
]
