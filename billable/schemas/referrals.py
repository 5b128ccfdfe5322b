"""Referral schemas: ``POST /referrals``."""

from __future__ import annotations

from pydantic import BaseModel, Field

from billable.schemas.common import DbId, ExternalId, JsonObject, Label


class ReferralAssignSchema(BaseModel):
    """Link a referrer and a referee, by user ids or by existing external identities."""

    referrer_id: DbId | None = Field(None, description="Referrer user id (with referee_id).")
    referee_id: DbId | None = Field(None, description="Referee user id (with referrer_id).")
    provider: Label | None = Field(None, description="Provider of the external ids.")
    referrer_external_id: ExternalId | None = Field(None, description="Referrer external id.")
    referee_external_id: ExternalId | None = Field(None, description="Referee external id.")
    metadata: JsonObject | None = Field(None, description="Stored on the referral.")


__all__ = ["ReferralAssignSchema"]
