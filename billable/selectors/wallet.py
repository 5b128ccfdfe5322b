"""Wallet reads for the API, the admin and the bot: balances, batches and the ledger.

Every read applies the one spendability rule (``QuotaBatch.objects.spendable``). Each function
returns a lazy queryset (iterate it with ``async for`` in async code) or a plain value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from billable.models import Product, QuotaBatch, Transaction
from billable.models.base import normalize_key


def spendable_batches(user_id: Any) -> QuerySet[QuotaBatch]:
    """The user's spendable batches with their product, oldest first."""
    return (QuotaBatch.objects.spendable().filter(user_id=user_id).select_related("product")
            .order_by("created_at", "id"))


def balance_rows(user_id: Any) -> QuerySet[Any]:
    """Spendable units per product: rows ``{"product_id", "product__product_key", "total"}``."""
    rows: QuerySet[Any] = (QuotaBatch.objects.spendable().filter(user_id=user_id)
                           .values("product_id", "product__product_key")
                           .annotate(total=Sum("remaining_quantity"))
                           .order_by("product__product_key"))
    return rows


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


def entitlement_ends(user_id: Any, *, now: datetime | None = None
                     ) -> dict[str, datetime | None]:
    """``{product_key: end}`` of the current contiguous entitlement of every period / unlimited
    product the user holds now (``None`` = never ends).

    The batch covering now, extended by every later batch that starts before (or when) the
    previous one ends — a renewal paid ahead of time counts, a gap stops the chain.
    """
    now = now or timezone.now()
    rows = QuotaBatch.objects.filter(
        user_id=user_id, state=QuotaBatch.State.ACTIVE,
        product__product_type__in=(Product.ProductType.PERIOD, Product.ProductType.UNLIMITED),
    ).exclude(expires_at__lte=now).order_by("valid_from").values_list(
        "product__product_key", "valid_from", "expires_at")
    spans: dict[str, list[tuple[datetime, datetime | None]]] = {}
    for key, start, end in rows:
        spans.setdefault(str(key), []).append((start, end))
    ends: dict[str, datetime | None] = {}
    for key, batches in spans.items():
        current = [end for start, end in batches if start <= now]
        if current:  # a batch covers now
            ends[key] = _chain_end(batches, current, now)
    return ends


def _chain_end(batches: list[tuple[datetime, datetime | None]],
               current: list[datetime | None], now: datetime) -> datetime | None:
    """Extend the end of the ``current`` batches by the later ones (ordered by start)."""
    end = None if None in current else max(e for e in current if e is not None)
    for start, later in batches:
        if start <= now:
            continue
        if end is None or start > end:  # never ends already, or a gap: the chain stops
            break
        end = None if later is None else max(end, later)
    return end


__all__ = ["balance_rows", "balances_from", "entitlement_ends", "ledger_rows",
           "spendable_batches"]
