"""Growth schemas: ``POST /promo/redeem`` and ``POST /gifts/{token}/claim``."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from billable.schemas.common import NOT_BLANK, JsonObject, Key, UserRefIn, clean_text, hint
from billable.schemas.trials import Identities

#: A promo code as typed by a customer (any case, surrounding spaces ignored).
Code = Annotated[str, StringConstraints(max_length=64), AfterValidator(clean_text),
                 hint(minLength=1, pattern=NOT_BLANK)]


class PromoRedeemSchema(UserRefIn):
    """Redeem a promo code for a customer."""

    code: Code = Field(..., description="The promo code, any case.")
    sku: Key | None = Field(None, description="Offer to discount (discount codes that are not "
                                              "bound to one offer).")
    identities: Identities | None = Field(
        None, description="Identities that may use the code once, e.g. {\"telegram\": 42}; "
        "the customer's own identities always count.")
    metadata: JsonObject | None = Field(None, description="Stored with the redemption.")


class GiftClaimSchema(UserRefIn):
    """Claim a gift for a customer."""

    metadata: JsonObject | None = Field(None, description="Stored with the grant.")


__all__ = ["Code", "GiftClaimSchema", "PromoRedeemSchema"]
