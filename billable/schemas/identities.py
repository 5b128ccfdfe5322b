"""Identity schemas: ``POST /identify``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from billable.schemas.common import ExternalId, JsonObject, Label


class IdentifySchemaIn(BaseModel):
    """Resolve-or-create the billing user behind ``(provider, external_id)``."""

    provider: Label | None = Field(None, description="Identity source; 'default' when omitted.")
    external_id: ExternalId = Field(..., description="Stable external identifier (non-blank).")
    profile: JsonObject | None = Field(
        None, description="Profile fields merged into the identity metadata."
    )


class IdentifySchemaOut(BaseModel):
    """The resolved user and identity, plus trial eligibility."""

    user_id: int = Field(..., description="Billing user id for later calls.")
    identity_id: int = Field(..., description="ExternalIdentity id.")
    provider: str = Field(..., description="Provider used.")
    external_id: str = Field(..., description="External id used (stripped).")
    created_identity: bool = Field(..., description="True if the identity was just created.")
    created_user: bool = Field(..., description="True if the user was just created.")
    trial_eligible: bool = Field(..., description="True if this identity never claimed a trial.")
    metadata: dict[str, Any] = Field(..., description="Identity metadata (merged profile).")


__all__ = ["IdentifySchemaIn", "IdentifySchemaOut"]
