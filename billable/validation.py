"""Input validation shared by every layer: one coercion, one offer resolution.

Each helper either returns the normalised value or raises a ``billable`` exception with a stable
``code``. Services call them before opening a transaction, so bad input never leaves a
half-written ledger behind. Only :func:`resolve_offer` reads the database.

* :func:`coerce_pk` is the one primary-key coercion (``None`` when the value is not a key of the
  model); :func:`coerce_user_id`, :func:`offer_pk` and :func:`order_pk` are it plus the error of
  their domain (``InvalidInput``, ``OfferNotFound``, ``OrderNotFound``).
* :func:`resolve_offer` is the one offer resolution: an instance, a primary key or a SKU, active
  offers only unless ``include_inactive`` (grants made by the host or the staff may use a
  retired offer; sales, exchanges and trials never do). It always raises ``OfferNotFound``,
  never returns ``None``.
"""

from __future__ import annotations

import hashlib
import json
import math
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connections, models, router

from billable.exceptions import (
    InvalidAmount,
    InvalidInput,
    InvalidProductKey,
    OfferNotFound,
    OrderNotFound,
)
from billable.models import Offer, Order
from billable.strings import safe_text

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
    if type(value) is str:
        known = _KEYS.get(value)
        if known is not None:
            return known
    if not isinstance(value, str) or not value.strip():
        raise InvalidProductKey(f"{field} must be a non-empty string", field=field)
    key = value.strip().upper()
    if len(key) > 50:
        raise InvalidProductKey(f"{field} is longer than 50 characters", field=field)
    try:
        key = safe_text(key, field=field)
    except InvalidInput as exc:
        raise InvalidProductKey(exc.message, field=field) from None
    if type(value) is str and len(_KEYS) < _KEYS_KEPT:
        _KEYS[value] = key
    return key


#: Spellings already normalized (``" pro "`` → ``"PRO"``): a key is checked once per process, not
#: on every ``check_quota``; only accepted spellings are kept, at most ``_KEYS_KEPT`` of them.
_KEYS: dict[str, str] = {}
_KEYS_KEPT = 4096


def coerce_pk(value: Any, *, model: type[models.Model] | None = None) -> Any:
    """The primary key of ``model`` named by ``value``, or ``None`` when it names none.

    Accepts a model instance (its ``pk``), the key itself, or a string holding it (stripped).
    ``None``, blanks, booleans (``True`` is not user 1) and floats are never keys; integer keys
    must be ASCII digits within ``1 …`` what the key column holds; other key types are parsed by
    the model's primary-key field. ``model=None`` means an integer key (orders, referrals, users
    of the default model).
    """
    if isinstance(value, models.Model):
        value = value.pk
    if value is None or isinstance(value, (bool, float)):
        return None
    field = model._meta.pk if model is not None else None
    integer = field is None or isinstance(field, (models.AutoField, models.IntegerField))
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
        if integer:
            if not (value.isascii() and value.isdigit()):
                return None
            value = int(value)
    if integer:
        limit = MAX_DB_ID if model is None else _pk_limit(model)
        return value if isinstance(value, int) and 0 < value <= limit else None
    assert field is not None
    try:
        return field.to_python(value)
    except (ValidationError, TypeError, ValueError, AttributeError):
        return None


@cache
def _pk_limit(model: type[models.Model]) -> int:
    """The largest integer primary key ``model``'s column can hold (``auth.User`` has a 32-bit
    ``AutoField``: a larger id names no account and must not reach the database)."""
    field = model._meta.pk
    assert field is not None
    ops = connections[router.db_for_read(model)].ops
    high = ops.integer_field_range(field.get_internal_type())[1]
    return MAX_DB_ID if high is None else min(int(high), MAX_DB_ID)


@cache
def _user_id_limit(label: str) -> int:
    """:func:`_pk_limit` of the account model ``label``; 0 when its key is not an integer."""
    return _pk_limit(_account_model(label)) if _integer_pk(label) else 0


@cache
def _account_model(label: str) -> type[models.Model]:
    """``get_user_model()`` for ``label`` without the app registry lookup on every call."""
    return get_user_model()


@cache
def _integer_pk(label: str) -> bool:
    """Whether the account model ``label`` has an integer primary key."""
    return isinstance(_account_model(label)._meta.pk, (models.AutoField, models.IntegerField))


def coerce_user_id(value: Any) -> Any:
    """Return the primary key of the billing account named by ``value``.

    Accepts a user instance, an ``int`` or a string holding the primary key. ``None``, booleans,
    floats and values the user model's primary key cannot parse raise :class:`InvalidInput`
    with the message ``user_id is required`` / ``Invalid user_id``.
    """
    if type(value) is int and 0 < value <= _user_id_limit(settings.AUTH_USER_MODEL):
        return value  # the common case, decided without the general parse below
    if value is None or value == "":
        raise InvalidInput("user_id is required", field="user_id")
    parsed = coerce_pk(value, model=_account_model(settings.AUTH_USER_MODEL))
    if parsed is None:
        raise InvalidInput("Invalid user_id", field="user_id")
    return parsed


def offer_pk(offer: Any) -> Any:
    """The primary key of an offer instance or key (no query); else :class:`OfferNotFound`."""
    pk = coerce_pk(offer, model=Offer) if isinstance(offer, (Offer, int, str)) else None
    if pk is None:
        raise OfferNotFound("Offer not found")
    return pk


def order_pk(order: Any) -> Any:
    """The primary key of an order instance or key (no query); else :class:`OrderNotFound`."""
    pk = coerce_pk(order, model=Order)
    if pk is None:
        raise OrderNotFound(f"Order not found: {order!r}")
    return pk


def resolve_offer(offer: Any, *, include_inactive: bool = False) -> Offer:
    """The offer named by an instance, a primary key or a SKU; else :class:`OfferNotFound`.

    An ``int`` is a primary key; a string is a SKU (any case) first, then a primary key when it
    is all digits. Inactive offers are refused unless ``include_inactive``.
    """
    offers = Offer.objects.all() if include_inactive else Offer.objects.filter(is_active=True)
    if isinstance(offer, Offer):
        if offer.pk is None or not (include_inactive or offer.is_active):
            raise OfferNotFound("Offer not found")
        return offer
    found = None
    if isinstance(offer, str) and offer.strip():
        found = offers.filter(sku=safe_text(offer.strip(), field="offer_id")).first()
    if found is None:
        pk = coerce_pk(offer, model=Offer) if isinstance(offer, (int, str)) else None
        found = offers.filter(pk=pk).first() if pk is not None else None
    if found is None:
        raise OfferNotFound("Offer not found")
    return found


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


def action_type_text(value: Any) -> str:
    """A ledger ``action_type`` (also a grant's ``source``): a non-blank string of at most 50."""
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > 50:
        raise InvalidInput("action_type must be a non-empty string of at most 50 characters",
                           field="action_type")
    return safe_text(value.strip(), field="action_type")


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
    "action_type_text",
    "coerce_pk",
    "coerce_user_id",
    "fingerprint",
    "metadata_dict",
    "normalize_product_key",
    "offer_pk",
    "optional_key",
    "order_pk",
    "positive_int",
    "resolve_offer",
    "safe_json",
    "safe_text",
]
