"""Shared building blocks of the REST schemas: safe scalar types, the envelope, user references.

Every string a client sends is checked here before it reaches a service or the database:
NUL characters and lone surrogates are refused (PostgreSQL cannot store them), lengths are bounded
by the columns they end up in, ids must fit a signed 64-bit column, and JSON objects (metadata,
profile) may only hold storable values. A violation is a ``422`` validation error, never a ``500``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
)

from billable.validation import MAX_AMOUNT, MAX_DB_ID, safe_json, safe_text


def clean_text(value: str) -> str:
    """Refuse NUL characters and lone surrogates (neither can be stored in PostgreSQL)."""
    return safe_text(value, field="text")


def strip_required(value: str) -> str:
    """Strip surrounding whitespace and refuse a blank result."""
    value = value.strip()
    if not value:
        raise ValueError("must not be empty or whitespace-only")
    return value


def clean_json(value: dict[str, Any]) -> dict[str, Any]:
    """Refuse JSON objects that the database cannot store (NUL, surrogates, NaN, deep nesting).

    The rule is the service layer's (``billable.validation.safe_json``); its error is a
    ``ValueError``, which Django Ninja reports as a ``422``.
    """
    result: dict[str, Any] = safe_json(value, field="JSON")
    return result


def aware_utc(value: datetime) -> datetime:
    """Treat naive datetimes as UTC and refuse values that overflow when converted to UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("datetime is out of range") from None


#: A database id (primary key) supplied by a client.
DbId = Annotated[int, Field(ge=1, le=MAX_DB_ID)]
#: A page size asked for by a client (the server caps it further).
PageLimit = Annotated[int, Field(ge=1, le=1000)]
#: A positive ledger amount.
Amount = Annotated[int, Field(ge=1, le=MAX_AMOUNT)]
#: A product key or SKU (any case; stored upper-case).
Key = Annotated[str, StringConstraints(max_length=50), AfterValidator(clean_text)]
#: A short label: provider, action type, payment method, identity type.
Label = Annotated[str, StringConstraints(max_length=50), AfterValidator(clean_text)]
#: An external reference: external id, action id, idempotency key, payment id.
Ref = Annotated[str, StringConstraints(max_length=255), AfterValidator(clean_text)]
#: A free-text reason (refunds, cancellations).
Reason = Annotated[str, StringConstraints(max_length=1000), AfterValidator(clean_text)]
#: A JSON object the database can store.
JsonObject = Annotated[dict[str, Any], AfterValidator(clean_json)]
#: A timezone-aware UTC datetime (naive input is read as UTC).
UtcDatetime = Annotated[datetime, AfterValidator(aware_utc)]


def _external_id(value: str | int) -> str:
    text = clean_text(strip_required(str(value)))
    if len(text) > 255:
        raise ValueError("external_id must be at most 255 characters")
    return text


#: An external identifier: a non-blank string (or integer, e.g. a Telegram id), stripped.
ExternalId = Annotated[StrictStr | StrictInt, AfterValidator(_external_id)]


class BaseSchema(BaseModel):
    """Base of the response schemas: populated from model instances or dicts."""

    model_config = ConfigDict(from_attributes=True)


class CommonResponse(BaseModel):
    """The command envelope: ``{"success", "message", "data"}``.

    Errors use it too, with ``success: false`` and the stable error code in ``data.error``.
    """

    success: bool = Field(..., description="True if the operation succeeded.")
    message: str = Field(..., description="Human-readable status or error message.")
    data: dict[str, Any] | None = Field(None, description="Result payload, or error details.")


class UnauthorizedResponse(BaseModel):
    """Body of every ``401``: ``{"detail": "Unauthorized"}``."""

    detail: str


class ValidationErrorResponse(BaseModel):
    """Body of every ``422``: Django Ninja's list of validation errors."""

    detail: list[dict[str, Any]]


class UserRefIn(BaseModel):
    """Names a billing user: ``user_id`` or ``external_id`` + ``provider`` (``user_id`` wins)."""

    user_id: DbId | None = Field(None, description="Billing user id; wins over external_id.")
    external_id: ExternalId | None = Field(
        None, description="External identifier (e.g. a Telegram id), used with provider."
    )
    provider: Label | None = Field(None, description="Identity provider; 'default' when omitted.")


#: Error responses every operation documents (the domain errors use the envelope).
ERROR_RESPONSES: dict[int, type[BaseModel]] = {
    400: CommonResponse,
    401: UnauthorizedResponse,
    404: CommonResponse,
    409: CommonResponse,
    422: ValidationErrorResponse,
    503: CommonResponse,
}


def responses(ok: Any) -> dict[int, Any]:
    """The ``response=`` mapping of an operation: ``200: ok`` plus the shared error bodies."""
    return {200: ok, **ERROR_RESPONSES}


__all__ = [
    "ERROR_RESPONSES",
    "MAX_AMOUNT",
    "MAX_DB_ID",
    "Amount",
    "BaseSchema",
    "CommonResponse",
    "DbId",
    "ExternalId",
    "JsonObject",
    "Key",
    "Label",
    "PageLimit",
    "Reason",
    "Ref",
    "UnauthorizedResponse",
    "UserRefIn",
    "UtcDatetime",
    "ValidationErrorResponse",
    "clean_json",
    "clean_text",
    "responses",
]
