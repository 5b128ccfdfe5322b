"""Bulk promo codes: create N random codes sharing one template, and their CSV export."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from billable.exceptions import InvalidInput, OfferNotFound
from billable.models import PromoCode
from billable.services.csv_cells import validation_text, write_rows
from billable.validation import metadata_dict, resolve_offer, safe_text

#: Letters and digits that cannot be misread (no 0/O, 1/I/L).
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CSV_COLUMNS = ("code", "kind", "offer", "percent_off", "amount_off", "currency", "max_uses",
               "uses_count", "valid_from", "valid_until", "is_active", "batch")
MAX_BULK = 100_000
#: The fields a batch of codes may set (``code`` is drawn, ``uses_count`` starts at 0).
TEMPLATE_FIELDS = frozenset({"kind", "offer", "percent_off", "amount_off", "currency",
                             "max_uses", "once_per_customer", "first_time_only", "valid_from",
                             "valid_until", "is_active", "metadata"})
_WHOLE = ("percent_off", "max_uses")
_FLAGS = ("once_per_customer", "first_time_only", "is_active")
_WHEN = ("valid_from", "valid_until")


def random_code(length: int = 10, prefix: str = "") -> str:
    """``prefix`` + ``length`` characters of :data:`ALPHABET` from ``secrets``."""
    return prefix.upper() + "".join(secrets.choice(ALPHABET) for _ in range(length))


def code_template(count: Any, *, prefix: Any = "", length: Any = 10, batch: Any = "",
                  **fields: Any) -> tuple[str, dict[str, Any]]:
    """Check a whole generation request; return the prefix (upper-case) and the fields every
    code copies (``batch`` included), ready for ``PromoCode(...)``.

    The one validation of bulk codes (the Python API, the command and the admin page call
    it through :func:`generate_codes`): types first (a ``bool`` is not a number, a float is
    not an amount, a string is not a date), the offer by instance, primary key or SKU (retired
    offers allowed), then the model's own rules (:meth:`PromoCode.full_clean`: field ranges,
    ``max_uses >= 1``, what each kind needs). Raises :class:`InvalidInput` (``field`` in its
    details) or :class:`OfferNotFound`; reads the database only to find the offer and to
    evaluate the CHECK constraints.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= MAX_BULK:
        raise InvalidInput(f"count must be between 1 and {MAX_BULK}", field="count")
    if isinstance(length, bool) or not isinstance(length, int) or not 6 <= length <= 32:
        raise InvalidInput("length must be a whole number from 6 to 32", field="length")
    prefix = _text(prefix, "prefix").lstrip().upper()  # a code is matched stripped
    if len(prefix) + length > 64:
        raise InvalidInput("prefix + length must be at most 64 characters", field="prefix")
    fields.pop("code", None)
    unknown = sorted(set(fields) - TEMPLATE_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown promo code field(s): {', '.join(unknown)}",
                           field=unknown[0])
    template = {**fields, "batch": _text(batch, "batch")}
    _check_types(template)
    sample = PromoCode(code="SAMPLE", **template)
    try:
        sample.full_clean(exclude=["code"], validate_unique=False)
    except ValidationError as exc:
        named = getattr(exc, "error_dict", {})
        raise InvalidInput(validation_text(exc), field=next(iter(named), "template")) from None
    return prefix, {name: getattr(sample, name) for name in template}  # as the fields parsed


def _check_types(template: dict[str, Any]) -> None:
    """Refuse values a model field would silently coerce (``True`` → 1, ``2.5`` → 2) and
    normalize the rest in place (offer resolved, currency upper-case, naive times made aware)."""
    for name in _WHOLE:
        value = template.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidInput(f"{name} must be a whole number", field=name)
    for name in _FLAGS:
        if name in template and not isinstance(template[name], bool):
            raise InvalidInput(f"{name} must be true or false", field=name)
    for name in _WHEN:
        value = template.get(name)
        if value is not None and not isinstance(value, datetime):
            raise InvalidInput(f"{name} must be a datetime", field=name)
        if value is not None and timezone.is_naive(value):
            template[name] = timezone.make_aware(value)
    amount = template.get("amount_off")
    if amount is not None and (isinstance(amount, (bool, float)) or
                               not isinstance(amount, (int, Decimal, str))):
        raise InvalidInput("amount_off must be a decimal number (not a float)",
                           field="amount_off")
    if template.get("kind") is not None:
        template["kind"] = _text(template["kind"], "kind").strip().lower()
    currency = template.get("currency")
    template["currency"] = "" if currency is None else _text(currency, "currency").strip().upper()
    offer = template.get("offer")
    if offer is not None:
        try:
            template["offer"] = resolve_offer(offer, include_inactive=True)
        except OfferNotFound:
            raise OfferNotFound(f"Offer {offer!r} not found", field="offer") from None
    if "metadata" in template:
        template["metadata"] = metadata_dict(template["metadata"])


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    return safe_text(value, field=field)


def generate_codes(count: int, *, prefix: str = "", length: int = 10, batch: str = "",
                   **template: Any) -> list[PromoCode]:
    """Create ``count`` new random codes with the fields of ``template`` (``kind``,
    ``offer``, ``percent_off``, ``max_uses`` …); a code that already exists is drawn again.

    Everything is checked first (:func:`code_template`): bad input raises
    :class:`InvalidInput` / :class:`OfferNotFound` and creates no code; the codes are then
    written in one transaction (all of them or none)."""
    prefix, fields = code_template(count, prefix=prefix, length=length, batch=batch,
                                   **template)
    created: list[PromoCode] = []
    with transaction.atomic():
        while len(created) < count:
            wanted = {random_code(length, prefix) for _ in range(count - len(created))}
            taken = set(PromoCode.objects.filter(code__in=wanted).values_list("code", flat=True))
            rows = [PromoCode(code=code, **fields) for code in wanted - taken]
            created += PromoCode.objects.bulk_create(rows)
    return created


def codes_csv(codes: Iterable[PromoCode]) -> str:
    """The codes as CSV text (header :data:`CSV_COLUMNS`; formula-like cells escaped)."""
    return write_rows(CSV_COLUMNS, (
        [promo.code, promo.kind, promo.offer.sku if promo.offer_id and promo.offer else "",
         promo.percent_off or "", promo.amount_off or "", promo.currency, promo.max_uses or "",
         promo.uses_count, promo.valid_from.isoformat() if promo.valid_from else "",
         promo.valid_until.isoformat() if promo.valid_until else "", promo.is_active,
         promo.batch] for promo in codes))


__all__ = ["ALPHABET", "CSV_COLUMNS", "MAX_BULK", "TEMPLATE_FIELDS", "code_template", "codes_csv",
           "generate_codes", "random_code"]
