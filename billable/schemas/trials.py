"""Trial schemas: ``POST /demo/trial-grant``."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StrictInt, StrictStr

from billable.schemas.common import JsonObject, Key, Label, UserRefIn, clean_json


def _identities(value: dict[str, str | int]) -> dict[str, str | int]:
    clean_json(dict(value))
    return value


#: ``{identity_type: value}``, e.g. ``{"telegram": 5454776146}``: a string or an integer
#: (strict: JSON ``true`` is not the identity ``1``).
Identities = Annotated[dict[Label, StrictStr | StrictInt], AfterValidator(_identities)]


class TrialGrantSchema(UserRefIn):
    """Claim a free offer once per identity."""

    sku: Key = Field(..., description="Free offer to grant (price 0, any case).")
    identities: Identities | None = Field(
        None, description="Identities to record, e.g. {\"telegram\": 5454776146}; when omitted, "
        "the external id sent or the user's own identities are used.",
    )
    metadata: JsonObject | None = Field(None, description="Context stored with the grant.")
    grant_type: Label = Field("trial", description="Accepted for 0.2 compatibility; ignored.")


__all__ = ["TrialGrantSchema"]
