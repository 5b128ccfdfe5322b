"""Catalog endpoints: products and active offers (read-only, native async ORM)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from billable.api.errors import fail
from billable.exceptions import OfferNotFound, ProductNotFound
from billable.models.base import normalize_key
from billable.schemas.catalog import OfferSchema, ProductSchema
from billable.schemas.common import Key, KeyFilter, responses
from billable.selectors.catalog import active_offers
from billable.services import ProductService

router = Router()


@router.get("/products", response=responses(list[ProductSchema]))
async def list_products(request: HttpRequest) -> Any:
    """All active products, by name."""
    return list(await ProductService.aget_active_products())


@router.get("/products/{product_key}", response=responses(ProductSchema))
async def get_product(request: HttpRequest, product_key: Key) -> Any:
    """One active product by key (any case); ``404 Product not found`` otherwise."""
    product = await ProductService.aget_product_by_key(product_key)
    if product is None or not product.is_active:
        return fail(404, ProductNotFound.default_message, ProductNotFound.code)
    return product


@router.get("/catalog", response=responses(list[OfferSchema]))
async def list_catalog(request: HttpRequest,
                       sku: Query[list[KeyFilter] | None] = None) -> Any:  # type: ignore[type-arg]
    """Active offers with their items.

    ``?sku=A&sku=B`` (any case) returns only those offers, in the order asked; unknown or
    inactive SKUs are left out.
    """
    if not sku:
        return [offer async for offer in active_offers()]
    wanted = [normalize_key(value) for value in sku]
    found = {offer.sku: offer async for offer in active_offers(wanted)}
    return [found[key] for key in wanted if key in found]


@router.get("/catalog/{sku}", response=responses(OfferSchema))
async def get_catalog_offer(request: HttpRequest, sku: Key) -> Any:
    """One active offer by SKU (any case); ``404 Offer not found`` otherwise."""
    offer = await active_offers([sku]).afirst()
    if offer is None:
        return fail(404, OfferNotFound.default_message, OfferNotFound.code)
    return offer
