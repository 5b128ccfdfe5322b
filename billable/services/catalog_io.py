"""Catalog import/export (CSV) and the quick ``GET_<KEY>`` offer.

Pure functions, free of HTTP: the admin views are thin wrappers around them, and a management
command or an API endpoint can reuse them as they are.

Every write goes through the models' normal ``full_clean()`` + ``save()`` path, so CAPS
normalisation of keys/SKUs and the shared product-key/SKU namespace apply exactly as elsewhere.

Import semantics (see ``docs/admin.md``): a file is applied inside one database transaction.
By default invalid rows are skipped and reported while valid rows are applied (the published 0.2
behaviour); with ``strict=True`` any invalid row rolls the whole file back (all or nothing). A
file is capped in rows and in time (``MAX_IMPORT_ROWS``, ``MAX_IMPORT_SECONDS``) so one request
never holds a transaction for minutes, and ``progress(done, total)`` reports how far it got.
Cells are read and written by ``csv_cells`` (formula escaping, storable values). The quick offer
lives in ``quick_offer`` and is re-exported here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from billable.conf import billable_settings
from billable.models import Offer, OfferItem, Product
from billable.models.base import normalize_key
from billable.models.catalog import check_translations
from billable.services.csv_cells import (
    CsvSource,
    Row,
    RowError,
    check_cells,
    parse_bool,
    parse_created_at,
    parse_metadata,
    parse_positive_int,
    parse_price,
    read_rows,
    validation_text,
    write_rows,
)
from billable.services.quick_offer import create_quick_offer

PRODUCT_CSV_FIELDS: tuple[str, ...] = (
    "product_key", "name", "description", "product_type", "is_active", "is_currency",
    "created_at", "metadata", "translations",
)
OFFER_CSV_FIELDS: tuple[str, ...] = (
    "sku", "name", "price", "currency", "image", "description", "is_active", "created_at",
    "metadata", "translations",
)
#: Columns an imported file may leave out (files exported before they existed). They come
#: last in an export, after the columns of the published 0.2 format, so a reader that takes
#: 0.2's columns by position keeps working.
OPTIONAL_CSV_FIELDS: tuple[str, ...] = ("translations",)
OFFER_ITEM_CSV_FIELDS: tuple[str, ...] = ("product_key", "quantity", "period_unit", "period_value")
OFFER_CSV_HEADERS: tuple[str, ...] = (
    *(name for name in OFFER_CSV_FIELDS if name not in OPTIONAL_CSV_FIELDS),
    *OFFER_ITEM_CSV_FIELDS, *OPTIONAL_CSV_FIELDS,
)

#: Rows one import may hold; larger files are refused before anything is written.
MAX_IMPORT_ROWS = 2000
#: Time one import may run; past it the whole file is rolled back (nothing is imported).
MAX_IMPORT_SECONDS = 20.0

_SKU_MAX = Offer._meta.get_field("sku").max_length or 50

Progress = Callable[[int, int], None]


@dataclass
class ImportResult:
    """Outcome of one CSV import: counts, per-row errors, progress and what was overwritten.

    ``applied`` is False when nothing was written (bad headers, too many rows, out of time, or
    ``strict`` with errors).
    """

    created: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)
    links_overwritten: list[str] = field(default_factory=list)
    header_error: bool = False
    strict: bool = False
    rows_total: int = 0
    rows_done: int = 0
    seconds: float = 0.0
    stopped: str = ""

    @property
    def applied(self) -> bool:
        return not self.header_error and not self.stopped and not (self.strict and self.errors)

    def summary(self) -> str:
        """One human sentence for the admin message (the published 0.2 wording)."""
        if self.stopped:
            return self.stopped
        if not self.applied:
            return f"Import aborted: {len(self.errors)} error(s); nothing was imported."
        return f"Import finished: {self.created} created, {self.updated} updated."

    def progress_line(self) -> str:
        """How far the import got: ``Processed 120 of 500 rows in 1.4 s.``"""
        return (f"Processed {self.rows_done} of {self.rows_total} rows in "
                f"{self.seconds:.1f} s.")


class _Clock:
    """Progress and the time budget of one import."""

    def __init__(self, result: ImportResult, total: int, *, max_seconds: float,
                 progress: Progress | None) -> None:
        self.result, self.total, self.max_seconds = result, total, max_seconds
        self.progress, self.started = progress, time.monotonic()
        result.rows_total = total

    def advance(self, rows: int) -> bool:
        """Count ``rows`` as done; False once the time budget is spent."""
        result = self.result
        result.rows_done += rows
        result.seconds = time.monotonic() - self.started
        if self.progress is not None:
            self.progress(result.rows_done, self.total)
        if result.seconds <= self.max_seconds or result.rows_done >= self.total:
            return True
        result.stopped = (
            f"Import stopped after {self.max_seconds:.0f} s at row {result.rows_done} of "
            f"{self.total}; nothing was imported. Split the file into smaller ones.")
        return False


def _save(obj: Product | Offer | OfferItem) -> None:
    """``full_clean()`` + ``save()`` inside a savepoint, turning refusals into ``RowError``."""
    try:
        with transaction.atomic():
            obj.full_clean()
            obj.save()
    except ValidationError as exc:
        raise RowError(validation_text(exc)) from exc
    except IntegrityError as exc:
        raise RowError("conflicts with existing data (unique constraint)") from exc


def _finish(result: ImportResult) -> ImportResult:
    if not result.applied:
        transaction.set_rollback(True)
        result.created = result.updated = 0
        result.links_overwritten = []
    return result


def _translations(row: Row, current: Any) -> Any:
    """The ``translations`` cell as a JSON object (an empty cell keeps what is stored)."""
    if not row.get("translations"):
        return current
    try:
        return check_translations(parse_metadata(row["translations"]))
    except RowError as exc:
        raise RowError(str(exc).replace("metadata", "translations")) from None
    except ValidationError as exc:
        raise RowError("invalid translations: " + " ".join(exc.messages)) from None


def _open_import(source: CsvSource, fields: Any, *, strict: bool, max_rows: int
                 ) -> tuple[ImportResult, Any]:
    """A fresh ``ImportResult`` and the file's rows, or ``None`` rows when the file is refused
    as a whole (bad headers or encoding, more than ``max_rows`` rows)."""
    result = ImportResult(strict=strict)
    try:
        rows = read_rows(source, fields, OPTIONAL_CSV_FIELDS)
    except RowError as exc:
        result.header_error = True
        result.errors.append(str(exc))
        return result, None
    if len(rows) > max_rows:
        result.header_error = True
        result.errors.append(f"The file has {len(rows)} rows; at most {max_rows} can be "
                             "imported at once. Split the file into smaller ones.")
        return result, None
    return result, rows


# -- products ----------------------------------------------------------------------------------


def export_products_csv(products: Iterable[Product] | None = None) -> str:
    """CSV text of ``products`` (all products when None), columns ``PRODUCT_CSV_FIELDS``.

    Cells a spreadsheet would run as a formula are escaped (``'=…``); import strips that.
    """
    items = Product.objects.order_by("pk") if products is None else products
    return write_rows(PRODUCT_CSV_FIELDS, (
        [product.product_key or "", product.name, product.description, product.product_type,
         product.is_active, product.is_currency, product.created_at.isoformat(),
         json.dumps(product.metadata or {}, ensure_ascii=False),
         json.dumps(product.translations or {}, ensure_ascii=False)]
        for product in items))


def _apply_product_row(row: Row) -> bool:
    """Create or update one product from a row; True when created.

    Empty cells of typed columns keep the current value (the model default for a new row).
    """
    check_cells(row)
    key = normalize_key(row["product_key"])
    if not key:
        raise RowError("product_key is required")
    product_type = row["product_type"].lower()
    if product_type and product_type not in Product.ProductType.values:
        raise RowError(f"invalid product_type {row['product_type']!r}")
    metadata = parse_metadata(row["metadata"])
    created_at = parse_created_at(row["created_at"])
    product = Product.objects.select_for_update().filter(product_key=key).first()
    created = product is None
    product = product or Product(product_key=key)
    product.name = row["name"] or product.name
    if not product.name:
        raise RowError("name is required")
    product.description = row["description"]
    product.product_type = product_type or product.product_type
    product.is_active = parse_bool(row["is_active"], "is_active", default=product.is_active)
    product.is_currency = parse_bool(row["is_currency"], "is_currency",
                                     default=product.is_currency)
    product.metadata = metadata
    product.translations = _translations(row, product.translations)
    product.created_at = created_at or product.created_at
    _save(product)
    return created


def import_products_csv(source: CsvSource, *, strict: bool = False,
                        max_rows: int = MAX_IMPORT_ROWS,
                        max_seconds: float = MAX_IMPORT_SECONDS,
                        progress: Progress | None = None) -> ImportResult:
    """Upsert products by ``product_key`` (any case) from CSV; offers are never touched.

    ``progress(done, total)`` is called after every row. A file of more than ``max_rows`` rows
    is refused; one that takes longer than ``max_seconds`` is rolled back whole.
    """
    result, rows = _open_import(source, PRODUCT_CSV_FIELDS, strict=strict, max_rows=max_rows)
    if rows is None:
        return result
    clock = _Clock(result, len(rows), max_seconds=max_seconds, progress=progress)
    seen: set[str] = set()
    with transaction.atomic():
        for line, row in rows:
            key = normalize_key(row["product_key"])
            try:
                if key and key in seen:
                    raise RowError(f"duplicate product_key {key} in the file")
                seen.add(key)
                created = _apply_product_row(row)
            except RowError as exc:
                result.errors.append(f"Row {line}: {exc}")
            else:
                result.created += created
                result.updated += not created
            if not clock.advance(1):
                break
        return _finish(result)


# -- offers ------------------------------------------------------------------------------------


def export_offers_csv(offers: Iterable[Offer] | None = None) -> str:
    """CSV text of ``offers`` (all when None): one row per offer item, one bare row if none.

    Cells a spreadsheet would run as a formula are escaped (``'=…``); import strips that.
    """
    items = Offer.objects.order_by("pk") if offers is None else offers
    if isinstance(items, QuerySet):
        items = items.prefetch_related("items__product")
    return write_rows(OFFER_CSV_HEADERS, _offer_rows(items))


def _offer_rows(offers: Iterable[Offer]) -> Iterable[list[Any]]:
    for offer in offers:
        base = [
            offer.sku, offer.name, offer.price, offer.currency, offer.image or "",
            offer.description, offer.is_active, offer.created_at.isoformat(),
            json.dumps(offer.metadata or {}, ensure_ascii=False),
        ]
        translations = json.dumps(offer.translations or {}, ensure_ascii=False)
        lines = [
            [item.product.product_key or "", item.quantity, item.period_unit,
             "" if item.period_value is None else item.period_value]
            for item in offer.items.all()
        ]
        for line in lines or [["", "", "", ""]]:
            yield [*base, *line, translations]


def _apply_offer_fields(sku: str, row: Row) -> tuple[Offer, bool]:
    check_cells(row)
    price = parse_price(row["price"])
    metadata = parse_metadata(row["metadata"])
    created_at = parse_created_at(row["created_at"])
    offer = Offer.objects.select_for_update().filter(sku=sku).first()
    created = offer is None
    offer = offer or Offer(sku=sku, currency="")
    offer.name = row["name"] or offer.name
    if not offer.name:
        raise RowError("name is required")
    offer.price = price
    offer.currency = (row["currency"] or offer.currency or billable_settings.CURRENCY).upper()
    offer.image = row["image"] or None
    offer.description = row["description"]
    offer.is_active = parse_bool(row["is_active"], "is_active", default=offer.is_active)
    offer.metadata = metadata
    offer.translations = _translations(row, offer.translations)
    offer.created_at = created_at or offer.created_at
    _save(offer)
    return offer, created


def _add_offer_item(offer: Offer, row: Row) -> None:
    check_cells(row)
    key = normalize_key(row["product_key"])
    product = Product.objects.filter(product_key=key).first()
    if product is None:
        raise RowError(f"product '{key}' not found; item of offer {offer.sku} skipped")
    unit = row["period_unit"].lower() or OfferItem.PeriodUnit.FOREVER
    if unit not in OfferItem.PeriodUnit.values:
        raise RowError(f"invalid period_unit {row['period_unit']!r}")
    value = parse_positive_int(row["period_value"], "period_value", default=None)
    if unit != OfferItem.PeriodUnit.FOREVER and value is None:
        raise RowError(f"period_value is required for period_unit '{unit}'")
    quantity = parse_positive_int(row["quantity"], "quantity", default=1) or 1
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
        except RowError as exc:
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


def import_offers_csv(source: CsvSource, *, strict: bool = False,
                      max_rows: int = MAX_IMPORT_ROWS, max_seconds: float = MAX_IMPORT_SECONDS,
                      progress: Progress | None = None) -> ImportResult:
    """Upsert offers by ``sku`` (any case) from CSV, rows grouped by SKU (one per offer item).

    Offer fields come from the first row of each group. When any row of a group names a
    ``product_key`` the offer's items are replaced by the file's; otherwise they are kept.
    ``progress``, ``max_rows`` and ``max_seconds`` as for :func:`import_products_csv`.
    """
    result, rows = _open_import(source, OFFER_CSV_HEADERS, strict=strict, max_rows=max_rows)
    if rows is None:
        return result
    clock = _Clock(result, len(rows), max_seconds=max_seconds, progress=progress)
    groups = _group_by_sku(rows, result)
    result.rows_done = len(rows) - sum(len(group) for group in groups.values())
    with transaction.atomic():
        for sku, group in groups.items():
            try:
                created = _apply_offer_group(sku, group, result)
            except RowError as exc:
                result.errors.append(f"Offer {sku} (row {group[0][0]}): {exc}")
            else:
                result.created += created
                result.updated += not created
            if not clock.advance(len(group)):
                break
        return _finish(result)


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
