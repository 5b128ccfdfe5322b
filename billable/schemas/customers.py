"""Customer schemas: ``POST /customers/merge``."""

from __future__ import annotations

from pydantic import BaseModel, Field

from billable.schemas.common import DbId


class CustomerMergeSchema(BaseModel):
    """Move everything of ``source_user_id`` to ``target_user_id``."""

    target_user_id: DbId = Field(..., description="The account that remains.")
    source_user_id: DbId = Field(..., description="The account whose data moves.")


class CustomerMergeResponse(BaseModel):
    """What the merge moved."""

    success: bool = Field(..., description="True if the merge succeeded.")
    message: str = Field(..., description="Human-readable result.")
    moved_orders: int = Field(0, description="Orders moved.")
    moved_batches: int = Field(0, description="Quota batches moved.")
    moved_transactions: int = Field(0, description="Ledger rows re-assigned.")
    moved_identities: int = Field(0, description="External identities moved.")
    moved_referrals: int = Field(0, description="Referral links moved.")


__all__ = ["CustomerMergeResponse", "CustomerMergeSchema"]
