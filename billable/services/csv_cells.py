"""Reading and writing single CSV cells of the catalog files, safely in both directions.

* **Reading** turns a cell into a value the database can store *and read back*, or raises
  :class:`RowError` with a message for the admin: no NUL characters, metadata that is a JSON
  object without NaN, deep nesting or huge numbers, creation times inside years 1–9999 in UTC.
* **Writing** escapes cells a spreadsheet would run as a formula (leading ``=``, ``+``, ``-``,
  ``@``, tab or carriage return) with a leading apostrophe, and reading strips exactly that
  escape, so export → import is lossless (see :func:`escape_cell`).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC
from decimal import Decimal, InvalidOperation
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billable.exceptions import InvalidInput
from billable.validation import MAX_AMOUNT, safe_json, safe_text

Row = dict[str, str]
CsvSource = str | bytes | IO[str] | IO[bytes]

_TRUE = frozenset({"1", "true", "yes", "y", "on", "t"})
_FALSE = frozenset({"0", "false", "no", "n", "off", "f"})
#: Leading characters that make a spreadsheet treat a cell as a formula.
FORMULA_STARTS = frozenset("=+-@\t\r")
ESCAPE = "'"


class RowError(InvalidInput):
    """A row (or offer group) cannot be imported; the message is shown to the admin."""

    code = "csv_row_invalid"


# -- formula escaping --------------------------------------------------------------------------


def _needs_escape(text: str) -> bool:
    if not text:
        return False
    if text[0] in FORMULA_STARTS:
        return True
    return text[0] == ESCAPE and len(text) > 1 and (text[1] in FORMULA_STARTS or
                                                    text[1] == ESCAPE)


def escape_cell(value: Any) -> Any:
    """``value`` as written to a CSV cell: strings a spreadsheet would evaluate get ``'``.

    A string that already starts with ``'`` followed by a formula character (or another
    ``'``) is escaped too, so :func:`unescape_cell` never strips a quote that was data.
    """
    if isinstance(value, str) and _needs_escape(value):
        return ESCAPE + value
    return value


def unescape_cell(text: str) -> str:
    """Undo :func:`escape_cell`; any other text is returned unchanged."""
    if text[:1] == ESCAPE and _needs_escape(text[1:]):
        return text[1:]
    return text


def write_rows(header: tuple[str, ...], rows: Any) -> str:
    """CSV text with ``header`` and ``rows``, every cell passed through :func:`escape_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow([escape_cell(value) for value in row])
    return buffer.getvalue()


# -- reading -----------------------------------------------------------------------------------


def _decode(source: CsvSource) -> str:
    data: str | bytes = source if isinstance(source, (str, bytes)) else source.read()
    if isinstance(data, bytes):
        return data.decode("utf-8-sig")
    return data.removeprefix("\ufeff")


def read_rows(source: CsvSource, headers: tuple[str, ...],
              optional: tuple[str, ...] = ()) -> list[tuple[int, Row]]:
    """Rows as ``(line number, {header: unescaped, stripped value})``.

    ``optional`` headers may be missing from the file (their cells then read as ``""``).

    Raises :class:`RowError` for a file that cannot be read at all (wrong headers, not UTF-8,
    malformed CSV).
    """
    missing = f"CSV must have headers: {', '.join(headers)}"
    try:
        reader = csv.reader(io.StringIO(_decode(source)))
        names = [name.strip() for name in next(reader, [])]
        extra = [name for name in optional if name in headers and name not in names]
        if sorted(names + extra) != sorted(headers):
            raise RowError(missing)
        rows = []
        for line, values in enumerate(reader, start=2):
            if not any(value.strip() for value in values):
                continue
            padded = [*values, *[""] * (len(names) - len(values))]
            row = {n: unescape_cell(v.strip()) for n, v in zip(names, padded, strict=False)}
            rows.append((line, {**dict.fromkeys(extra, ""), **row}))
        return rows
    except UnicodeDecodeError as exc:
        raise RowError("The file must be a UTF-8 encoded CSV.") from exc
    except csv.Error as exc:
        raise RowError(f"Malformed CSV: {exc}") from exc


def check_cells(row: Row) -> None:
    """Refuse a row holding text the database cannot store (NUL characters)."""
    for name, value in row.items():
        try:
            safe_text(value, field=name)
        except InvalidInput as exc:
            raise RowError(exc.message) from None


def parse_bool(value: str, name: str, *, default: bool) -> bool:
    if value == "":
        return default
    lowered = value.lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise RowError(f"invalid {name} {value!r} (use true/false)")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_metadata(value: str) -> dict[str, Any]:
    """A JSON object the database can store (no NaN/Infinity, no deep nesting, no NUL)."""
    try:
        parsed = json.loads(value or "{}", parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise RowError("invalid metadata JSON") from exc
    if not isinstance(parsed, dict):
        raise RowError("invalid metadata JSON: must be an object")
    try:
        return dict(safe_json(parsed))
    except InvalidInput as exc:
        raise RowError(f"invalid metadata JSON: {exc.message}") from None


def parse_created_at(value: str) -> Any:
    """An aware datetime inside years 1–9999 *in UTC* (what PostgreSQL gives back readable)."""
    if not value:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise RowError(f"invalid created_at {value!r} (use ISO 8601)")
    try:
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed)
        parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise RowError(f"invalid created_at {value!r} (out of range)") from None
    return parsed


def parse_price(value: str) -> Decimal:
    if not value:
        raise RowError("price is required")
    try:
        price = Decimal(value)
    except InvalidOperation as exc:
        raise RowError(f"invalid price {value!r}") from exc
    if not price.is_finite() or price < 0:
        raise RowError(f"invalid price {value!r}")
    return price


def parse_positive_int(value: str, name: str, *, default: int | None) -> int | None:
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise RowError(f"invalid {name} {value!r} (a positive whole number)") from exc
    if not 0 < number <= MAX_AMOUNT:  # the integer columns' limit, on SQLite too
        raise RowError(f"invalid {name} {value!r} (a positive whole number up to {MAX_AMOUNT})")
    return number


def validation_text(exc: ValidationError) -> str:
    """A ``ValidationError`` as one line: ``field: message; …``."""
    if not hasattr(exc, "error_dict"):
        return "; ".join(exc.messages)
    parts: list[str] = []
    for name, messages in exc.message_dict.items():
        prefix = "" if name == "__all__" else f"{name}: "
        parts.extend(prefix + message for message in messages)
    return "; ".join(parts)


__all__ = ["CsvSource", "Row", "RowError", "check_cells", "escape_cell", "parse_bool",
           "parse_created_at", "parse_metadata", "parse_positive_int", "parse_price",
           "read_rows", "unescape_cell", "validation_text", "write_rows"]
