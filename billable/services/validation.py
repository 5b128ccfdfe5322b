"""Small, public input validators shared by every service.

Each helper either returns the normalised value or raises a ``billable`` exception with a stable
``code``; none of them touches the database. Services call them before opening a transaction, so
bad input never leaves a half-written ledger behind.
"""

from __future__ import annotations

import hashlib
import json
import math
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models

from billable.exceptions import InvalidAmount, InvalidInput, InvalidProductKey

#: Largest amount a ledger row can hold (PositiveIntegerField on PostgreSQL).
MAX_AMOUNT = 2_147_483_647
MAX_KEY_LENGTH = 255
#: Largest primary key a ``BigAutoField`` (and SQLite's INTEGER) can hold.
MAX_DB_ID = 2**63 - 1
#: Deepest nesting accepted inside a JSON value (metadata, profiles, identities).
MAX_JSON_DEPTH = 32
MAX_JSON_INT_BITS = 4000


def positive_int(value: Any, *, field: str = "amount") -> int:
    """Return ``value`` as a positive ``int`` or raise :class:`InvalidAmount`.

    Accepted: ``int`` and a whole ``Decimal``. Refused: ``bool``, ``float`` (even ``2.0``: a
    float amount is a caller bug), fractional ``Decimal``, strings, ``None``, zero, negatives and
    values above :data:`MAX_AMOUNT`.
    """
    message = f"{field} must be a positive integer, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise InvalidAmount(message, field=field)
    if isinstance(value, Decimal):
        try:
            if not value.is_finite() or value != value.to_integral_value():
                raise InvalidAmount(message, field=field)
        except InvalidOperation as exc:
            raise InvalidAmount(message, field=field) from exc
        value = int(value)
    if value <= 0 or value > MAX_AMOUNT:
        raise InvalidAmount(message, field=field)
    return int(value)


def normalize_product_key(value: Any, *, field: str = "product_key") -> str:
    """Return a product key / SKU stripped and upper-cased; blank or non-string is refused.

    An empty key is an error, never "any product" (the published 0.2 package matched every
    product for an empty key).
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidProductKey(f"{field} must be a non-empty string", field=field)
    key = value.strip().upper()
    if len(key) > 50:
        raise InvalidProductKey(f"{field} is longer than 50 characters", field=field)
    try:
        return safe_text(key, field=field)
    except InvalidInput as exc:
        raise InvalidProductKey(exc.message, field=field) from None


def coerce_user_id(value: Any) -> Any:
    """Return the primary key of the billing account named by ``value``.

    Accepts a user instance, an ``int`` or a string holding the primary key. ``None``, booleans,
    floats and values the user model's primary key cannot parse raise :class:`InvalidInput`
    with the message ``user_id is required`` / ``Invalid user_id``.
    """
    if value is None or value == "":
        raise InvalidInput("user_id is required", field="user_id")
    if isinstance(value, models.Model):
        value = value.pk
    if isinstance(value, (bool, float)):
        raise InvalidInput("Invalid user_id", field="user_id")
    if isinstance(value, str):
        value = value.strip()
    pk_field = get_user_model()._meta.pk
    assert pk_field is not None
    try:
        parsed = pk_field.to_python(value)
    except (ValidationError, TypeError, ValueError) as exc:
        raise InvalidInput("Invalid user_id", field="user_id") from exc
    if parsed is None or (isinstance(parsed, int) and not 0 < parsed <= MAX_DB_ID):
        raise InvalidInput("Invalid user_id", field="user_id")
    return parsed


def optional_key(value: Any, *, field: str = "idempotency_key") -> str | None:
    """Return a stripped idempotency key / action id as ``str`` (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput(f"{field} must be a string", field=field)
    text = str(value).strip()
    if not text:
        raise InvalidInput(f"{field} must not be blank", field=field)
    if len(text) > MAX_KEY_LENGTH:
        raise InvalidInput(f"{field} is longer than {MAX_KEY_LENGTH} characters", field=field)
    return safe_text(text, field=field)


def safe_text(value: str, *, field: str = "value") -> str:
    """Return ``value`` if PostgreSQL can store it: no NUL character, no lone surrogate.

    Raises :class:`InvalidInput` otherwise (the database would refuse it with a raw error).
    """
    if "\x00" in value:
        raise InvalidInput(f"{field} must not contain NUL characters", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} must be valid Unicode text", field=field) from None
    return value


def _json_children(node: Any, field: str) -> list[Any]:
    """Check one JSON node; return its children."""
    if isinstance(node, str):
        safe_text(node, field=field)
    elif isinstance(node, bool) or node is None:
        return []
    elif isinstance(node, int):
        if node.bit_length() > MAX_JSON_INT_BITS:
            raise InvalidInput(f"{field} holds a number that is too large", field=field)
    elif isinstance(node, float):
        if not math.isfinite(node):
            raise InvalidInput(f"{field} numbers must be finite (no NaN or Infinity)",
                               field=field)
    elif isinstance(node, dict):
        for key in node:
            if not isinstance(key, str):
                raise InvalidInput(f"{field} keys must be strings", field=field)
            safe_text(key, field=field)
        return list(node.values())
    elif isinstance(node, (list, tuple)):
        return list(node)
    else:
        raise InvalidInput(f"{field} must be JSON-serializable: {type(node).__name__} is not",
                           field=field)
    return []


def safe_json(value: Any, *, field: str = "metadata") -> Any:
    """Return ``value`` if it is JSON the database can store and read back.

    Refused with :class:`InvalidInput`: values JSON cannot hold (``Decimal``, ``datetime``,
    objects), non-string keys, NaN and infinities, NUL characters and lone surrogates, numbers
    of more than 4,000 bits, and nesting deeper than :data:`MAX_JSON_DEPTH` levels. The walk is
    iterative, so a deeply nested value never reaches Python's recursion limit.
    """
    level: list[Any] = [value]
    for _ in range(MAX_JSON_DEPTH + 1):
        if not level:
            return value
        level = [child for node in level for child in _json_children(node, field)]
    raise InvalidInput(f"{field} must not be nested deeper than {MAX_JSON_DEPTH} levels",
                       field=field)


def metadata_dict(value: Any, *, field: str = "metadata") -> dict[str, Any]:
    """Return a shallow copy of caller metadata; ``None`` is ``{}``.

    Non-dicts and values the database cannot store (see :func:`safe_json`) are refused with
    :class:`InvalidInput` instead of failing later inside the database write.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be a JSON object", field=field)
    return dict(safe_json(value, field=field))


def fingerprint(payload: dict[str, Any]) -> str:
    """SHA-256 of a request's canonical JSON: two requests match when their fingerprints do."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = [
    "MAX_AMOUNT",
    "MAX_DB_ID",
    "MAX_JSON_DEPTH",
    "coerce_user_id",
    "fingerprint",
    "metadata_dict",
    "normalize_product_key",
    "optional_key",
    "positive_int",
    "safe_json",
    "safe_text",
]
