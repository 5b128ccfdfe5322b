"""Catalog schemas: products, offers and the items inside an offer."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import Field, field_validator

from billable.schemas.common import BaseSchema


class ProductSchema(BaseSchema):
    """A product: what a user can hold (a counter, a period or an unlimited right)."""

    id: int = Field(..., description="Primary key of the product.")
    product_key: str | None = Field(None, description="Unique key, stored upper-case.")
    name: str = Field(..., description="Display name.")
    description: str = Field("", description="Optional description.")
    product_type: str = Field(..., description="'period', 'quantity' or 'unlimited'.")
    is_active: bool = Field(..., description="Inactive products are hidden.")
    is_currency: bool = Field(False, description="True if the product is an exchange currency.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free JSON configuration.")
    created_at: datetime = Field(..., description="Creation time.")


class OfferItemSchema(BaseSchema):
    """One product inside an offer, with its quantity and validity period."""

    product: ProductSchema = Field(..., description="The product granted.")
    quantity: int = Field(..., description="Units granted per offer bought.")
    period_unit: str = Field(..., description="'hours', 'days', 'months', 'years' or 'forever'.")
    period_value: int | None = Field(None, description="Length of the period; null for forever.")


class OfferSchema(BaseSchema):
    """An active offer (catalog entry) with its items; prices are decimal strings."""

    sku: str = Field(..., description="Offer SKU, stored upper-case.")
    name: str = Field(..., description="Display name.")
    price: Decimal = Field(..., description="Price per unit, e.g. \"9.99\".")
    currency: str = Field(..., description="ISO code, XTR, INTERNAL or a currency product key.")
    description: str = Field("", description="Optional description.")
    image: str | None = Field(None, description="Optional image URL.")
    is_active: bool = Field(..., description="Inactive offers are hidden.")
    items: list[OfferItemSchema] = Field(default_factory=list, description="Products granted.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free JSON configuration.")

    @field_validator("image", mode="before")
    @classmethod
    def _image_url(cls, value: Any) -> str | None:
        if not value:
            return None
        return str(getattr(value, "url", value))

    @field_validator("items", mode="before")
    @classmethod
    def _items_list(cls, value: Any) -> Any:
        return list(value.all()) if hasattr(value, "all") else value


__all__ = ["OfferItemSchema", "OfferSchema", "ProductSchema"]
