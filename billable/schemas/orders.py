"""Order schemas: creation, confirmation, cancellation, refund and the order document."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from billable.schemas.common import (
    NOT_BLANK,
    BaseSchema,
    JsonObject,
    Label,
    Reason,
    Ref,
    RetryKey,
    UserRefIn,
    clean_json,
)
from billable.services.order_input import MAX_LINE_QUANTITY

#: What one order line must look like, as the order service checks it (stated in OpenAPI; the
#: service refuses the rest with ``400`` ``invalid_input`` / ``invalid_amount`` or ``404``
#: ``offer_not_found``). Other keys (a client ``price``) are accepted and ignored.
ORDER_LINE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["sku"],
    "properties": {
        "sku": {"type": "string", "minLength": 1, "maxLength": 50, "pattern": NOT_BLANK,
                "description": "Offer SKU (any case)."},
        "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_LINE_QUANTITY,
                     "default": 1, "description": "Offers bought (default 1)."},
    },
    "additionalProperties": True,
}


class OrderItemSchema(BaseSchema):
    """One order line: offer SKU, quantity and the catalog unit price at purchase."""

    id: int = Field(..., description="Order item id.")
    sku: str = Field(..., description="Offer SKU.")
    quantity: int = Field(..., description="Offers bought.")
    price: Decimal = Field(..., description="Unit price at purchase, e.g. \"9.99\".")

    @model_validator(mode="before")
    @classmethod
    def _from_item(cls, data: Any) -> Any:
        if isinstance(data, dict) or not hasattr(data, "offer"):
            return data
        return {"id": data.pk, "sku": data.offer.sku, "quantity": data.quantity,
                "price": data.price}


class OrderSchema(BaseSchema):
    """An order document (``OrderService.serialize_order_to_dict``)."""

    id: int = Field(..., description="Order id.")
    user_id: int = Field(..., description="Buyer.")
    status: str = Field(..., description="pending, paid, cancelled or refunded.")
    total_amount: Decimal = Field(..., description="Total, e.g. \"40.00\".")
    currency: str = Field(..., description="Currency of every line.")
    payment_method: str | None = Field(None, description="Payment provider, set on confirm.")
    payment_id: str | None = Field(None, description="Provider's payment id, set on confirm.")
    created_at: datetime = Field(..., description="Creation time.")
    paid_at: datetime | None = Field(None, description="Payment time.")
    items: list[OrderItemSchema] = Field(default_factory=list, description="Order lines.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Application data.")


class OrderCreateSchema(UserRefIn):
    """``POST /orders`` body. Prices always come from the catalog."""

    items: list[dict[str, Any]] = Field(
        ..., max_length=100, description="Lines: [{\"sku\": str, \"quantity\": int}].",
        json_schema_extra={"minItems": 1, "items": ORDER_LINE_SCHEMA},
    )
    metadata: JsonObject | None = Field(None, description="Application data for the order.")
    idempotency_key: RetryKey | None = Field(
        None, description="Retry key; unique per user. A retry with the same key and body "
        "returns the order the first request created.")

    @field_validator("items")
    @classmethod
    def _storable_items(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for item in value:
            clean_json(item)
        return value


class OrderConfirmSchema(BaseModel):
    """``POST /orders/{id}/confirm`` body (sent by the payment webhook)."""

    payment_id: Ref | None = Field(None, description="Provider's payment id (idempotency).")
    payment_method: Label | None = Field(None, description="Payment provider.")
    status: Label = Field("paid", description="Accepted for 0.2 compatibility; ignored.")


class OrderRefundSchema(BaseModel):
    """``POST /orders/{id}/refund`` body."""

    reason: Reason | None = Field(None, description="Why the order is refunded.")


class OrderCancelSchema(BaseModel):
    """``POST /orders/{id}/cancel`` body."""

    reason: Reason | None = Field(None, description="Why the order is cancelled.")


__all__ = [
    "OrderCancelSchema",
    "OrderConfirmSchema",
    "OrderCreateSchema",
    "OrderItemSchema",
    "OrderRefundSchema",
    "OrderSchema",
]
