"""Bulk promo codes: create N random codes sharing one template, and their CSV export."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from billable.exceptions import InvalidInput
from billable.models import PromoCode
from billable.services.csv_cells import write_rows

#: Letters and digits that cannot be misread (no 0/O, 1/I/L).
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CSV_COLUMNS = ("code", "kind", "offer", "percent_off", "amount_off", "currency", "max_uses",
               "uses_count", "valid_from", "valid_until", "is_active", "batch")
MAX_BULK = 100_000


def random_code(length: int = 10, prefix: str = "") -> str:
    """``prefix`` + ``length`` characters of :data:`ALPHABET` from ``secrets``."""
    return prefix.upper() + "".join(secrets.choice(ALPHABET) for _ in range(length))


def generate_codes(count: int, *, prefix: str = "", length: int = 10, batch: str = "",
                   **template: Any) -> list[PromoCode]:
    """Create ``count`` new random codes with the fields of ``template`` (``kind``,
    ``offer``, ``percent_off``, ``max_uses`` …); a code that already exists is drawn again."""
    if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= MAX_BULK:
        raise InvalidInput(f"count must be between 1 and {MAX_BULK}")
    if not 6 <= length <= 32 or len(prefix) + length > 64:
        raise InvalidInput("length must be 6..32 and prefix + length at most 64")
    template.pop("code", None)
    created: list[PromoCode] = []
    with transaction.atomic():
        while len(created) < count:
            wanted = {random_code(length, prefix) for _ in range(count - len(created))}
            taken = set(PromoCode.objects.filter(code__in=wanted).values_list("code", flat=True))
            rows = [PromoCode(code=code, batch=batch, **template) for code in wanted - taken]
            for row in rows:
                row.currency = (row.currency or "").upper()
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


__all__ = ["ALPHABET", "CSV_COLUMNS", "codes_csv", "generate_codes", "random_code"]
