"""Small, public input validators shared by every service.

Each helper either returns the normalised value or raises a ``billable`` exception with a stable
``code``; none of them touches the database. Services call them before opening a transaction, so
bad input never leaves a half-written ledger behind.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models

from billable.exceptions import InvalidAmount, InvalidInput, InvalidProductKey

#: Largest amount a ledger row can hold (PositiveIntegerField on PostgreSQL).
MAX_AMOUNT = 2_147_483_647
MAX_KEY_LENGTH = 255


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
    return key


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
    if parsed is None or (isinstance(parsed, int) and parsed <= 0):
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
    return text


def metadata_dict(value: Any) -> dict[str, Any]:
    """Return a shallow copy of caller metadata; ``None`` is ``{}``.

    Non-dicts and values JSON cannot store (``Decimal``, ``datetime``, objects) are refused with
    :class:`InvalidInput` instead of failing later inside the database write.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("metadata must be a JSON object", field="metadata")
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"metadata must be JSON-serializable: {exc}", field="metadata") from exc
    return dict(value)


def fingerprint(payload: dict[str, Any]) -> str:
    """SHA-256 of a request's canonical JSON: two requests match when their fingerprints do."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = [
    "MAX_AMOUNT",
    "coerce_user_id",
    "fingerprint",
    "metadata_dict",
    "normalize_product_key",
    "optional_key",
    "positive_int",
]
