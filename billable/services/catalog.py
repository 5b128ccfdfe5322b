"""``ProductService``: read access to the product catalog (case-insensitive keys)."""

from __future__ import annotations

from django.db.models import Q

from billable.models import Product
from billable.services.validation import normalize_product_key


def _trial_query() -> Q:
    return Q(name__icontains="trial") | Q(metadata__is_trial=True)


class ProductService:
    """Active products, lookups by key, and trial products."""

    @classmethod
    def get_active_products(cls) -> list[Product]:
        """Active products, ordered by name."""
        return list(Product.objects.active().order_by("name", "id"))

    @classmethod
    async def aget_active_products(cls) -> list[Product]:
        """Async twin of :meth:`get_active_products` (native async read)."""
        return [p async for p in Product.objects.active().order_by("name", "id")]

    @classmethod
    def get_product_by_key(cls, product_key: str) -> Product | None:
        """The active product with this key (any case), or ``None``.

        A blank or non-string key raises :class:`~billable.exceptions.InvalidProductKey`.
        """
        key = normalize_product_key(product_key)
        return Product.objects.active().filter(product_key=key).first()

    @classmethod
    async def aget_product_by_key(cls, product_key: str) -> Product | None:
        """Async twin of :meth:`get_product_by_key` (native async read)."""
        key = normalize_product_key(product_key)
        return await Product.objects.active().filter(product_key=key).afirst()

    @classmethod
    def get_trial_products(cls) -> list[Product]:
        """Active products meant for trials: named "…trial…" or with ``metadata.is_trial``."""
        return list(Product.objects.active().filter(_trial_query()).order_by("name", "id"))

    @classmethod
    async def aget_trial_products(cls) -> list[Product]:
        """Async twin of :meth:`get_trial_products` (native async read)."""
        return [p async for p in
                Product.objects.active().filter(_trial_query()).order_by("name", "id")]


__all__ = ["ProductService"]
