"""Catalog reads: active offers with their items and products (three queries, any size)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Prefetch, QuerySet

from billable.models import Offer, OfferItem
from billable.models.base import normalize_key


def active_offers(skus: Iterable[str] | None = None) -> QuerySet[Offer]:
    """Active offers (of ``skus``, any case, when given) with items and products prefetched."""
    items = OfferItem.objects.select_related("product").order_by("id")
    offers = Offer.objects.active().prefetch_related(Prefetch("items", queryset=items))
    if skus is not None:
        offers = offers.filter(sku__in=[normalize_key(sku) for sku in skus])
    return offers


__all__ = ["active_offers"]
