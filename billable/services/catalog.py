"""``ProductService`` and ``OfferService``: read access to the catalog (case-insensitive keys)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import Q

from billable.models import Offer, Product
from billable.models.catalog import OFFER_VALIDATORS
from billable.validation import normalize_product_key, resolve_offer, safe_text


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


class OfferService:
    """Offer resolution for interfaces (the bot kit, hosts): the one rule of
    :func:`billable.validation.resolve_offer`."""

    @classmethod
    def get_offer(cls, offer: Any, *, include_inactive: bool = False) -> Offer:
        """The offer named by an instance, a primary key or a SKU (any case).

        Raises ``OfferNotFound`` for an unknown offer, or an inactive one unless
        ``include_inactive``.
        """
        return resolve_offer(offer, include_inactive=include_inactive)

    @classmethod
    async def aget_offer(cls, offer: Any, *, include_inactive: bool = False) -> Offer:
        """Async twin of :meth:`get_offer`."""
        return await sync_to_async(cls.get_offer)(offer, include_inactive=include_inactive)

    @classmethod
    def get_offers(cls, skus: Iterable[str], *, include_inactive: bool = False
                   ) -> dict[str, Offer]:
        """The offers of ``skus`` by (upper-case) SKU, items and products prefetched; unknown
        (or inactive) SKUs are left out."""
        wanted = {safe_text(str(sku).strip().upper(), field="sku") for sku in skus
                  if isinstance(sku, str) and sku.strip()}
        offers = Offer.objects.all() if include_inactive else Offer.objects.filter(is_active=True)
        found = offers.filter(sku__in=wanted).prefetch_related("items__product")
        return {offer.sku: offer for offer in found}

    @classmethod
    async def aget_offers(cls, skus: Iterable[str], *, include_inactive: bool = False
                          ) -> dict[str, Offer]:
        """Async twin of :meth:`get_offers`."""
        return await sync_to_async(cls.get_offers)(list(skus), include_inactive=include_inactive)

    @classmethod
    def register_validator(cls, validator: Callable[[Offer], None]) -> None:
        """Run ``validator(offer)`` in ``Offer.clean`` (so on every save): it raises
        ``ValidationError`` to refuse the offer. Registering it again changes nothing."""
        if validator not in OFFER_VALIDATORS:
            OFFER_VALIDATORS.append(validator)


__all__ = ["OfferService", "ProductService"]
