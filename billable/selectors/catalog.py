"""Catalog reads: offers and product names for the API, the admin and the bot.

:func:`active_offers` loads active offers with their items and products (three queries, any
size); the others are one query each and return model rows or plain values.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Prefetch, QuerySet

from billable.models import Offer, OfferItem, Product
from billable.models.base import normalize_key


def active_offers(skus: Iterable[str] | None = None) -> QuerySet[Offer]:
    """Active offers (of ``skus``, any case, when given) with items and products prefetched."""
    items = OfferItem.objects.select_related("product").order_by("id")
    offers = Offer.objects.active().prefetch_related(Prefetch("items", queryset=items))
    if skus is not None:
        offers = offers.filter(sku__in=[normalize_key(sku) for sku in skus])
    return offers


async def offer_by_sku(sku: str) -> Offer | None:
    """The offer of ``sku`` (any case), active or retired, or ``None`` — one query, nothing
    prefetched (what ``POST /exchange`` hands to ``TransactionService.exchange``, which
    refuses a retired offer itself)."""
    return await Offer.objects.filter(sku=normalize_key(sku)).afirst()


def find_offer(sku: object, *, active_only: bool = True) -> Offer | None:
    """The offer whose SKU is exactly ``sku`` (stripped; an active one unless ``active_only``
    is False), or ``None``."""
    query = Offer.objects.filter(sku=str(sku or "").strip())
    if active_only:
        query = query.filter(is_active=True)
    return query.first()


def offers_by_sku(skus: Iterable[str], *, active_only: bool = True) -> dict[str, Offer]:
    """``{SKU: offer}`` of the offers whose SKU is among ``skus`` (exact match)."""
    query = Offer.objects.filter(sku__in=list(skus))
    if active_only:
        query = query.filter(is_active=True)
    return {str(offer.sku): offer for offer in query}


def skus_with_product(skus: Iterable[str], product_key: str) -> set[str]:
    """The SKUs among ``skus`` (any case) whose offer, active or not, contains ``product_key``."""
    wanted = [str(sku).upper() for sku in skus]
    if not wanted:
        return set()
    return {str(sku) for sku in Offer.objects.filter(
        sku__in=wanted, items__product__product_key=product_key.upper()
    ).values_list("sku", flat=True).distinct()}


def offer_with_product(sku: str, product_key: str) -> Offer | None:
    """The offer ``sku`` (active or not) when it contains ``product_key``, else ``None``."""
    return Offer.objects.filter(
        sku=sku, items__product__product_key=product_key.upper()).first()


def product_names(product_keys: Iterable[str], lang: str | None = None) -> dict[str, str]:
    """``{KEY: name in lang}`` of the known products among ``product_keys`` (any case; the
    default-language name when not translated)."""
    keys = [str(key).upper() for key in product_keys]
    return {str(p.product_key): p.localized_name(lang)
            for p in Product.objects.filter(product_key__in=keys)}


def product_names_by_pk(pks: Iterable[int], lang: str | None = None) -> dict[int, str]:
    """``{product pk: name in lang}`` of the products among ``pks``."""
    return {int(p.pk): p.localized_name(lang) for p in Product.objects.filter(pk__in=list(pks))}


__all__ = ["active_offers", "find_offer", "offer_by_sku", "offer_with_product", "offers_by_sku",
           "product_names", "product_names_by_pk", "skus_with_product"]
