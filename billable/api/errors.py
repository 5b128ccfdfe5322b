"""The REST error contract: billable exceptions → HTTP status + JSON envelope, in one place.

Every endpoint is wrapped (``router.add_decorator``) by :func:`translate_errors`: a
:class:`~billable.exceptions.BillableError` raised by a service becomes
``{"success": false, "message": <message>, "data": {"error": <stable code>}}`` with the status of
its family (see :data:`STATUS_BY_ERROR`). An endpoint whose published 0.2 contract uses another
status for a family declares it with :func:`error_status`.

Only billable's own exceptions are translated to their stable codes. Anything else — a plain
``ValueError``, a ``DoesNotExist``, a Django ``ValidationError`` — is a bug: it is logged with
its traceback and answered ``500`` ``internal_error`` with a generic message (its text may hold
internal details and is never echoed to the client).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import Http404, HttpRequest, JsonResponse
from ninja import Status
from ninja.errors import HttpError
from ninja.errors import ValidationError as NinjaValidationError

from billable.api.auth import is_authenticated
from billable.api.envelope import error_body
from billable.exceptions import (
    BillableError,
    ConflictError,
    CurrencyError,
    DatabaseBusy,
    DatabaseUnavailable,
    IdempotencyConflict,
    InvalidInput,
    MergeError,
    NotFound,
    QuotaError,
    ReferralError,
    TrialAlreadyUsed,
)
from billable.ledger.retry import outage

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("billable.api")

#: The answer to an error that is not a billable exception (a bug): nothing of it is echoed.
INTERNAL_ERROR = "Internal error"

#: HTTP status per exception family; the most specific class in the MRO wins.
STATUS_BY_ERROR: dict[type[Exception], int] = {
    InvalidInput: 400,
    QuotaError: 400,
    CurrencyError: 400,
    MergeError: 400,
    TrialAlreadyUsed: 400,
    ReferralError: 400,
    NotFound: 404,
    IdempotencyConflict: 409,
    ConflictError: 409,
    DatabaseBusy: 503,
    DatabaseUnavailable: 503,
    BillableError: 400,
}

#: Status of a failure dict returned (not raised) by a service, by its ``error`` code.
STATUS_BY_CODE: dict[str, int] = {"idempotency_conflict": 409}

_OVERRIDES_ATTR = "_billable_error_status"
INVALID_JSON = "Cannot parse request body"


def fail(status: int, message: str, code: str, **data: Any) -> Status[dict[str, Any]]:
    """An error response with the envelope body (``message`` rendered in the active language)."""
    return Status(status, error_body(str(message), code, **data))


def failure_result(result: Mapping[str, Any], *, status: int = 400) -> Status[dict[str, Any]]:
    """Turn a service failure dict (``{"success": False, "error", "message"}``) into a response."""
    code = str(result.get("error") or "billable_error")
    body = {"success": False, "message": str(result.get("message") or code), "data": dict(result)}
    return Status(STATUS_BY_CODE.get(code, status), body)


def status_for(exc: Exception, overrides: Mapping[type[Exception], int] | None = None) -> int:
    """The HTTP status of ``exc``: endpoint overrides first, then :data:`STATUS_BY_ERROR`.

    ``DatabaseBusy`` and ``DatabaseUnavailable`` are always 503: they say nothing about the
    request, only that it may be repeated.
    """
    if isinstance(exc, (DatabaseBusy, DatabaseUnavailable)):
        return 503
    for table in (overrides or {}, STATUS_BY_ERROR):
        for cls in type(exc).__mro__:
            if cls in table:
                return table[cls]
    return 400


def to_response(exc: Exception, overrides: Mapping[type[Exception], int] | None = None
                ) -> Status[dict[str, Any]]:
    """The response for an exception raised by a service.

    A billable exception gets its status and stable code; a database outage (a broken
    connection, the pool's timeout, a lock or statement timeout, a deadlock that escaped the
    retry) is ``503`` ``database_unavailable`` / ``database_busy`` with one log line; anything
    else is logged (with its traceback) and answered ``500`` ``internal_error`` without its
    message.
    """
    if not isinstance(exc, BillableError):
        known = outage(exc)
        if known is not None:
            logger.warning("Database failure in a billable API endpoint, answered 503: %s",
                           describe_outage(exc))
            exc = known
    if isinstance(exc, BillableError):
        return fail(status_for(exc, overrides), exc.message, exc.code)
    logger.error("Unhandled error in a billable API endpoint", exc_info=exc)
    return fail(500, INTERNAL_ERROR, "internal_error")


def describe_outage(exc: BaseException) -> str:
    """``ExceptionClass: first line of the message`` of the database error behind ``exc``."""
    cause = exc.__cause__ or exc
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__module__}.{type(cause).__name__}: {first}"


def outages_are_503(run: F) -> F:
    """View decorator: a database outage met *before* the operation runs (the stored API key
    lookup of the auth, the scope check) is answered like one inside it, ``503`` with the
    envelope, not Django's ``500`` page."""

    @functools.wraps(run)
    async def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        try:
            return await run(request, *args, **kwargs)
        except Exception as exc:
            known = outage(exc)
            if known is None:
                raise
            logger.warning("Database failure before a billable API endpoint, answered 503: %s",
                           describe_outage(exc))
            return JsonResponse(error_body(known.message, known.code), status=503)

    return guarded  # type: ignore[return-value]


def error_status(overrides: Mapping[type[Exception], int]) -> Callable[[F], F]:
    """Declare endpoint-specific statuses, e.g. ``@error_status({NotFound: 400})``.

    Place it directly under the ``@router.<method>`` decorator; it only annotates the function.
    """

    def mark(view: F) -> F:
        setattr(view, _OVERRIDES_ATTR, dict(overrides))
        return view

    return mark


#: Raised on purpose for Django / Django Ninja to answer (their own status and body).
PASS_THROUGH: tuple[type[Exception], ...] = (HttpError, NinjaValidationError, Http404)

#: Exceptions an endpoint may raise on purpose (translated to their status and code); any other
#: ``Exception`` is a bug, answered 500 by :func:`to_response`.
HANDLED = (BillableError,)


def translate_errors(view: F) -> F:
    """Operation decorator: every exception becomes an envelope response (:func:`to_response`)."""
    overrides: dict[type[Exception], int] = getattr(view, _OVERRIDES_ATTR, {})

    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await view(*args, **kwargs)
            except PASS_THROUGH:
                raise
            except Exception as exc:
                return to_response(exc, overrides)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(view)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except PASS_THROUGH:
            raise
        except Exception as exc:
            return to_response(exc, overrides)

    return sync_wrapper  # type: ignore[return-value]


#: Errors Django raises while reading a request, before any API code runs: status, code, text.
REQUEST_ERRORS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (RequestDataTooBig, 413, "request_too_large",
     "Request body is larger than the server accepts (DATA_UPLOAD_MAX_MEMORY_SIZE)"),
    (TooManyFieldsSent, 400, "too_many_fields",
     "Too many query or form parameters (DATA_UPLOAD_MAX_NUMBER_FIELDS)"),
    (TooManyFilesSent, 400, "too_many_files",
     "Too many uploaded files (DATA_UPLOAD_MAX_NUMBER_FILES)"),
)


def _read_request(request: HttpRequest) -> JsonResponse | None:
    """Parse the query string and read the body now, where Django's refusals can be answered
    with the envelope; ``None`` when both are fine."""
    try:
        request.GET  # noqa: B018 (parsing is the point: it raises TooManyFieldsSent)
        if request.method in ("POST", "PUT", "PATCH"):
            request.body  # noqa: B018 (raises RequestDataTooBig)
    except SuspiciousOperation as exc:
        for kind, status, code, message in REQUEST_ERRORS:
            if isinstance(exc, kind):
                return JsonResponse(error_body(message, code), status=status)
        return JsonResponse(error_body("Bad request", "bad_request"), status=400)
    return None


def guard_request(run: F) -> F:
    """View decorator: requests Django or the JSON parser refuse get the error envelope.

    * a body above ``DATA_UPLOAD_MAX_MEMORY_SIZE`` → ``413`` ``request_too_large``; more query
      or form parameters than ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` → ``400`` ``too_many_fields``
      (Django's own answer would be an HTML page, or a traceback with ``DEBUG`` on);
    * an authenticated request whose body is not JSON → ``400`` ``invalid_json`` (Django Ninja
      answers ``{"detail": "Cannot parse request body"}``). Unauthenticated requests still get
      401 for that case.
    """

    @functools.wraps(run)
    async def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        refused = _read_request(request)
        if refused is not None:
            return refused
        if request.method in ("POST", "PUT", "PATCH") and request.body:
            try:
                json.loads(request.body)
            except Exception:
                if is_authenticated(request):
                    return JsonResponse(error_body(INVALID_JSON, "invalid_json"), status=400)
        return await run(request, *args, **kwargs)

    return guarded  # type: ignore[return-value]


#: The earlier name of :func:`guard_request`.
reject_unparsable_body = guard_request


__all__ = [
    "INTERNAL_ERROR",
    "INVALID_JSON",
    "STATUS_BY_CODE",
    "STATUS_BY_ERROR",
    "error_body",
    "error_status",
    "fail",
    "failure_result",
    "guard_request",
    "outages_are_503",
    "reject_unparsable_body",
    "status_for",
    "to_response",
    "translate_errors",
]
