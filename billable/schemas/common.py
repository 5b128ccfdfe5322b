"""Shared building blocks of the REST schemas: safe scalar types, the envelope, user references.

Every string a client sends is checked here before it reaches a service or the database:
NUL characters and lone surrogates are refused (PostgreSQL cannot store them), lengths are bounded
by the columns they end up in, ids must fit a signed 64-bit column, and JSON objects (metadata,
profile) may only hold storable values. A violation is a ``422`` validation error, never a ``500``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StrictInt,
    StrictStr,
    StringConstraints,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

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


def refuse_bool(value: Any) -> Any:
    """Refuse JSON ``true`` / ``false`` where a number is expected.

    Pydantic's lax mode reads a boolean as ``1`` / ``0``, so ``{"user_id": true}`` would name
    user 1 and ``{"amount": true}`` would spend one unit. Numbers written as strings (``"5"``,
    as every query parameter is) are still accepted.
    """
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


def aware_utc(value: datetime) -> datetime:
    """Treat naive datetimes as UTC and refuse values that overflow when converted to UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("datetime is out of range") from None


#: JSON Schema ``pattern`` (ECMA-262, also valid for Python's ``re``): no NUL character, which
#: the server refuses in every string (PostgreSQL cannot store it).
NO_NUL = r"^[^\u0000]*$"
#: ``pattern`` of a string the server refuses when blank: at least one non-whitespace
#: character, and no NUL.
NOT_BLANK = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"


@dataclass(frozen=True)
class SchemaHint:
    """``Annotated`` metadata that adds keywords to a field's JSON Schema (the OpenAPI
    document) without changing how the value is validated.

    The server's own checks stay where they are (a validator here → ``422``, a service →
    ``400``/``404`` with its stable code); the hint tells generated clients the same rule so
    they do not send what the server refuses.
    """

    keywords: tuple[tuple[str, Any], ...] = ()  # hashable: types built from it go in unions

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = dict(handler(core_schema))
        schema.update(self.keywords)
        return schema


def hint(**keywords: Any) -> SchemaHint:
    """``SchemaHint`` with JSON Schema keywords, e.g. ``hint(minLength=1, pattern=NOT_BLANK)``."""
    return SchemaHint(tuple(sorted(keywords.items())))


#: A database id (primary key) supplied by a client.
DbId = Annotated[int, Field(ge=1, le=MAX_DB_ID), BeforeValidator(refuse_bool)]
#: A page size asked for by a client (the server caps it further).
PageLimit = Annotated[int, Field(ge=1, le=1000), BeforeValidator(refuse_bool)]
#: A positive ledger amount.
Amount = Annotated[int, Field(ge=1, le=MAX_AMOUNT), BeforeValidator(refuse_bool)]
#: A product key or SKU naming one product or offer (any case; stored upper-case). The
#: services refuse a blank key (``invalid_product_key`` / ``invalid_input`` / ``offer_not_found``).
Key = Annotated[str, StringConstraints(max_length=50), AfterValidator(clean_text),
                hint(minLength=1, pattern=NOT_BLANK)]
#: A product key or SKU used as a filter: blank means "no filter".
KeyFilter = Annotated[str, StringConstraints(max_length=50), AfterValidator(clean_text),
                      hint(pattern=NO_NUL)]
#: A short label: provider, payment method, identity type (blank means the default).
Label = Annotated[str, StringConstraints(max_length=50), AfterValidator(clean_text),
                  hint(pattern=NO_NUL)]
#: The action type of a ledger write: a non-blank label (the ledger refuses a blank one).
ActionType = Annotated[str, StringConstraints(max_length=50), AfterValidator(clean_text),
                       hint(minLength=1, pattern=NOT_BLANK)]
#: An external reference: payment id, cursor.
Ref = Annotated[str, StringConstraints(max_length=255), AfterValidator(clean_text),
                hint(pattern=NO_NUL)]
#: A retry or action reference the services refuse when blank: idempotency key, action id.
RetryKey = Annotated[str, StringConstraints(max_length=255), AfterValidator(clean_text),
                     hint(minLength=1, pattern=NOT_BLANK)]
#: A free-text reason (refunds, cancellations).
Reason = Annotated[str, StringConstraints(max_length=1000), AfterValidator(clean_text),
                   hint(pattern=NO_NUL)]
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
ExternalId = Annotated[
    Annotated[StrictStr, hint(minLength=1, maxLength=255, pattern=NOT_BLANK)] | StrictInt,
    AfterValidator(_external_id),
]


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


#: Error responses every operation documents (the domain errors use the envelope). ``500`` is
#: the ``internal_error`` envelope of a bug (``billable.api.errors.to_response``): without it
#: here Django Ninja refuses to render that answer and Django's HTML error page goes out.
ERROR_RESPONSES: dict[int, type[BaseModel]] = {
    400: CommonResponse,
    401: UnauthorizedResponse,
    404: CommonResponse,
    409: CommonResponse,
    422: ValidationErrorResponse,
    500: CommonResponse,
    503: CommonResponse,
}


def responses(ok: Any) -> dict[int, Any]:
    """The ``response=`` mapping of an operation: ``200: ok`` plus the shared error bodies."""
    return {200: ok, **ERROR_RESPONSES}


__all__ = [
    "ERROR_RESPONSES",
    "MAX_AMOUNT",
    "MAX_DB_ID",
    "NOT_BLANK",
    "NO_NUL",
    "ActionType",
    "Amount",
    "BaseSchema",
    "CommonResponse",
    "DbId",
    "ExternalId",
    "JsonObject",
    "Key",
    "KeyFilter",
    "Label",
    "PageLimit",
    "Reason",
    "Ref",
    "RetryKey",
    "SchemaHint",
    "UnauthorizedResponse",
    "UserRefIn",
    "UtcDatetime",
    "ValidationErrorResponse",
    "clean_json",
    "clean_text",
    "hint",
    "refuse_bool",
    "responses",
]
