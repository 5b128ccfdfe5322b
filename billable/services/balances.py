"""``BalanceService``: what a user holds right now, by batch and by product.

Every method applies the one spendability rule (``QuotaBatch.objects.spendable``), so answers
never depend on whether the expiry job has run yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import QuerySet
from django.utils import timezone

from billable.ledger import closing, holds
from billable.models import QuotaBatch
from billable.validation import coerce_user_id, normalize_product_key


def _active(user_id: Any, product_key: str | None) -> QuerySet[QuotaBatch]:
    qs = QuotaBatch.objects.spendable(timezone.now()).filter(user_id=coerce_user_id(user_id))
    if product_key is not None:
        qs = qs.filter(product__product_key=normalize_product_key(product_key))
    return qs.select_related("product").order_by("created_at", "id")


def summarize(batches: Iterable[QuotaBatch]) -> dict[str, dict[str, Any]]:
    """Per product key: ``total``, ``used``, ``remaining``, ``is_unlimited``, ``expiry``.

    ``expiry`` is the soonest ``expires_at`` among the spendable batches (``None`` when none
    of them expires); ``is_unlimited`` is true for period and unlimited products.
    """
    summary: dict[str, dict[str, Any]] = {}
    for batch in batches:
        key = str(batch.product.product_key or batch.product_id)
        entry = summary.setdefault(key, {"total": 0, "used": 0, "remaining": 0,
                                         "is_unlimited": False, "expiry": None})
        entry["is_unlimited"] = entry["is_unlimited"] or batch.product.is_entitlement
        entry["total"] += batch.initial_quantity
        entry["remaining"] += batch.remaining_quantity
        entry["used"] += batch.initial_quantity - batch.remaining_quantity
        if batch.expires_at and (entry["expiry"] is None or batch.expires_at < entry["expiry"]):
            entry["expiry"] = batch.expires_at
    return summary


class BalanceService:
    """Spendable batches and per-product balance summaries of a user."""

    @classmethod
    def get_user_active_products(cls, user_id: Any, product_key: str | None = None
                                 ) -> QuerySet[QuotaBatch]:
        """The user's spendable batches (optionally of one product), oldest first.

        Returns a lazy, indexable queryset with ``product`` joined. ``product_key=None`` means
        every product; a blank key raises :class:`~billable.exceptions.InvalidProductKey`.
        """
        return _active(user_id, product_key)

    @classmethod
    async def aget_user_active_products(cls, user_id: Any, product_key: str | None = None
                                        ) -> list[QuotaBatch]:
        """Async twin of :meth:`get_user_active_products`, as a list (native async read)."""
        return [batch async for batch in _active(user_id, product_key)]

    @classmethod
    def get_balance_summary(cls, user_id: Any) -> dict[str, dict[str, Any]]:
        """``{KEY: {"total", "used", "remaining", "is_unlimited", "expiry"}}`` (one query)."""
        return summarize(_active(user_id, None))

    @classmethod
    async def aget_balance_summary(cls, user_id: Any) -> dict[str, dict[str, Any]]:
        """Async twin of :meth:`get_balance_summary` (native async read)."""
        return summarize([batch async for batch in _active(user_id, None)])

    @classmethod
    def deactivate_expired_products(cls, user_id: Any = None) -> int:
        """Expire past-due batches (of one user when ``user_id`` is given); return the count.

        Releases expired holds first, exactly like ``TransactionService.expire_batches``.
        """
        uid = coerce_user_id(user_id) if user_id is not None else None
        holds.release_expired(user_id=uid)
        return closing.expire_due(user_id=uid)

    @classmethod
    async def adeactivate_expired_products(cls, user_id: Any = None) -> int:
        """Async twin of :meth:`deactivate_expired_products`."""
        return await sync_to_async(cls.deactivate_expired_products)(user_id)


__all__ = ["BalanceService", "summarize"]
