"""Wallet reads for the API, the admin and the bot: balances, batches and the ledger.

Every read applies the one spendability rule (``QuotaBatch.objects.spendable``). Each function
returns a lazy queryset (iterate it with ``async for`` in async code) or a plain value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet, Sum

from billable.models import QuotaBatch, Transaction
from billable.models.base import normalize_key


def spendable_batches(user_id: Any) -> QuerySet[QuotaBatch]:
    """The user's spendable batches with their product, oldest first."""
    return (QuotaBatch.objects.spendable().filter(user_id=user_id).select_related("product")
            .order_by("created_at", "id"))


def balance_rows(user_id: Any) -> QuerySet[Any]:
    """Spendable units per product: rows ``{"product_id", "product__product_key", "total"}``."""
    return (QuotaBatch.objects.spendable().filter(user_id=user_id)
            .values("product_id", "product__product_key")
            .annotate(total=Sum("remaining_quantity")).order_by("product__product_key"))


def balances_from(rows: list[dict[str, Any]]) -> dict[str, int]:
    """``{KEY: units}`` from :func:`balance_rows` (a product without a key is ``prod_<id>``)."""
    balances: dict[str, int] = {}
    for row in rows:
        key = row["product__product_key"] or f"prod_{row['product_id']}"
        balances[key] = balances.get(key, 0) + int(row["total"] or 0)
    return balances


def ledger_rows(user_id: Any, *, product_key: str | None = None, action_type: str | None = None,
                date_from: datetime | None = None, before: Q | None = None
                ) -> QuerySet[Transaction]:
    """The user's ledger rows, newest first, optionally filtered (``before``: a cursor)."""
    rows = Transaction.objects.filter(user_id=user_id)
    if product_key:
        rows = rows.filter(quota_batch__product__product_key=normalize_key(product_key))
    if action_type:
        rows = rows.filter(action_type=action_type)
    if date_from:
        rows = rows.filter(created_at__gte=date_from)
    if before is not None:
        rows = rows.filter(before)
    return rows.order_by("-created_at", "-id")


__all__ = ["balance_rows", "balances_from", "ledger_rows", "spendable_batches"]
