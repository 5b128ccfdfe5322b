"""Wallet schemas: balance checks, batches, the ledger, consumption and exchange."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field, model_validator

from billable.schemas.catalog import ProductSchema
from billable.schemas.common import (
    ActionType,
    Amount,
    BaseSchema,
    JsonObject,
    Key,
    RetryKey,
    UserRefIn,
)


class BalanceFeatureSchema(BaseModel):
    """``GET /balance``: whether the user can use a product right now."""

    can_use: bool = Field(..., description="True if a spendable batch exists.")
    product_key: str = Field(..., description="The product key checked (upper-case).")
    remaining: int | None = Field(None, description="Spendable units left.")
    message: str = Field(..., description="Human-readable explanation.")


class ActiveBatchSchema(BaseSchema):
    """``GET /user-products``: one spendable batch in the 0.2 "user product" shape."""

    id: UUID = Field(..., description="Batch id.")
    product: ProductSchema = Field(..., description="The product held.")
    purchased_at: datetime = Field(..., description="When the batch was granted.")
    expires_at: datetime | None = Field(None, description="Expiry; null means never.")
    total_quantity: int = Field(..., description="Units granted.")
    used_quantity: int = Field(0, description="Units already spent or removed.")
    is_active: bool = Field(True, description="True while the batch is spendable.")
    remaining: int | None = Field(None, description="Units left.")

    @model_validator(mode="before")
    @classmethod
    def _from_batch(cls, data: Any) -> Any:
        if not hasattr(data, "initial_quantity"):
            return data
        return {
            "id": data.id,
            "product": data.product,
            "purchased_at": data.created_at,
            "expires_at": data.expires_at,
            "total_quantity": data.initial_quantity,
            "used_quantity": data.initial_quantity - data.remaining_quantity,
            "is_active": data.is_spendable(),
            "remaining": data.remaining_quantity,
        }


class QuotaBatchSchema(BaseSchema):
    """``GET /wallet/batches``: one spendable batch with its raw quantities and state."""

    id: UUID = Field(..., description="Batch id.")
    product: ProductSchema = Field(..., description="The product held.")
    initial_quantity: int = Field(..., description="Units granted.")
    remaining_quantity: int = Field(..., description="Units left.")
    valid_from: datetime = Field(..., description="Start of validity.")
    expires_at: datetime | None = Field(None, description="Expiry; null means never.")
    state: str = Field(..., description="ACTIVE, EXHAUSTED, EXPIRED or REVOKED.")


class TransactionSchema(BaseSchema):
    """One immutable ledger row."""

    id: UUID = Field(..., description="Transaction id.")
    user_id: int = Field(..., description="Owner of the row.")
    amount: int = Field(..., description="Magnitude of the change (never negative).")
    direction: str = Field(..., description="CREDIT or DEBIT.")
    action_type: str = Field(..., description="purchase, usage, refund, exchange, …")
    created_at: datetime = Field(..., description="When the row was written.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Context of the change.")


class WalletBalanceSchema(BaseModel):
    """``GET /wallet``: spendable units per product key."""

    user_id: int = Field(..., description="Billing user id.")
    balances: dict[str, int] = Field(..., description="Product key → spendable units.")


class BalanceSummarySchema(BaseModel):
    """Per-product summary (``BalanceService.get_balance_summary``)."""

    user_id: int = Field(..., description="Billing user id.")
    products: dict[str, dict[str, Any]] = Field(..., description="Product key → summary.")


class QuotaConsumeSchema(UserRefIn):
    """``POST /wallet/consume`` body."""

    product_key: Key = Field(..., description="Product to spend (any case).")
    action_type: ActionType = Field("usage", description="Reason recorded in the ledger.")
    action_id: RetryKey | None = Field(None, description="External reference of the action.")
    idempotency_key: RetryKey | None = Field(None, description="Retry key; unique per user.")
    metadata: JsonObject | None = Field(None, description="Context stored on the DEBIT rows.")
    amount: Amount = Field(1, description="Units to spend (default 1).")


class QuotaCheckSchema(UserRefIn):
    """Body shape of a quota check (kept for 0.2 compatibility)."""

    product_key: Key = Field(..., description="Product to check (any case).")


class ExchangeSchema(UserRefIn):
    """``POST /exchange`` body: spend internal currency on an offer."""

    sku: Key = Field(..., description="Offer to buy with internal currency (any case).")
    metadata: JsonObject | None = Field(None, description="Context stored with the exchange.")
    idempotency_key: RetryKey | None = Field(None, description="Retry key; unique per user.")


__all__ = [
    "ActiveBatchSchema",
    "BalanceFeatureSchema",
    "BalanceSummarySchema",
    "ExchangeSchema",
    "QuotaBatchSchema",
    "QuotaCheckSchema",
    "QuotaConsumeSchema",
    "TransactionSchema",
    "WalletBalanceSchema",
]
