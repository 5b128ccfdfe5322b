"""Authentication and scopes of the REST API.

Every request needs ``Authorization: Bearer <token>`` (scheme in any case): the
``BILLABLE_API_TOKEN`` setting (full scope) or a stored :class:`~billable.models.ApiKey`.
Missing, unknown, revoked or expired tokens get ``401 {"detail": "Unauthorized"}``; a valid key
without the endpoint's scope gets ``403`` with the API's error envelope and the code
``insufficient_scope``. With no setting and no key every request is refused — the API is never
open.

The scope each endpoint needs is declared in one table, :data:`ROUTE_SCOPES`, keyed by
``(METHOD, path)``. An endpoint missing from it needs ``admin``, and the test-suite fails until
it is added (``tests/billable/api/test_api_keys_scopes.py`` walks every route).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from ninja.security import HttpBearer

from billable.api.envelope import error_body
from billable.api.routes import route_of
from billable.logs import log_context
from billable.scopes import ADMIN
from billable.services.api_keys import (
    Principal,
    authenticate_token,
    may_be_key,
    settings_principal,
)

F = TypeVar("F", bound=Callable[..., Any])

#: The scope each endpoint needs, by ``(METHOD, path relative to the router)``.
ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/products"): "catalog:read",
    ("GET", "/products/{product_key}"): "catalog:read",
    ("GET", "/catalog"): "catalog:read",
    ("GET", "/catalog/{sku}"): "catalog:read",
    ("POST", "/identify"): "customers:write",
    ("POST", "/customers/merge"): "customers:merge",
    ("GET", "/balance"): "wallet:read",
    ("GET", "/user-products"): "wallet:read",
    ("GET", "/wallet"): "wallet:read",
    ("GET", "/wallet/batches"): "wallet:read",
    ("GET", "/wallet/transactions"): "wallet:read",
    ("POST", "/wallet/consume"): "wallet:consume",
    ("POST", "/exchange"): "wallet:consume",
    ("POST", "/orders"): "orders:write",
    ("GET", "/orders/{order_id}"): "orders:read",
    ("POST", "/orders/{order_id}/cancel"): "orders:write",
    ("POST", "/orders/{order_id}/confirm"): "orders:confirm",
    ("POST", "/orders/{order_id}/refund"): "orders:refund",
    ("POST", "/demo/trial-grant"): "trials:grant",
    ("GET", "/referrals/stats"): "referrals:read",
    ("POST", "/referrals"): "referrals:write",
    ("GET", "/reports/dashboard"): "reports:read",
    ("GET", "/promo/quote"): "promo:read",
    ("POST", "/promo/redeem"): "promo:redeem",
    ("GET", "/gifts/{token}"): "gifts:read",
    ("POST", "/gifts/{token}/claim"): "gifts:claim",
}

INSUFFICIENT_SCOPE = "insufficient_scope"
#: Where the principal of an authenticated request is kept (also ``request.auth``).
PRINCIPAL_ATTR = "billable_principal"


def required_scope(method: str, path: str) -> str:
    """The scope of a route; ``admin`` for a route missing from :data:`ROUTE_SCOPES`."""
    return ROUTE_SCOPES.get((method.upper(), path), ADMIN)


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme in any case)."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def token_is_valid(token: str | None) -> bool:
    """True if ``token`` is ``BILLABLE_API_TOKEN`` or an active API key (sync; may query).

    An unset or empty setting never matches, whatever the token.
    """
    return authenticate_token(token) is not None


def request_principal(request: HttpRequest) -> Principal | None:
    """The principal of ``request`` (authenticated once, then kept on the request)."""
    if not hasattr(request, PRINCIPAL_ATTR):
        setattr(request, PRINCIPAL_ATTR, authenticate_token(bearer_token(request)))
    principal: Principal | None = getattr(request, PRINCIPAL_ATTR)
    return principal


async def arequest_principal(request: HttpRequest) -> Principal | None:
    """Async twin of :func:`request_principal`: only a stored key costs a thread hop (its
    query); ``BILLABLE_API_TOKEN`` and malformed tokens are decided in the event loop."""
    if hasattr(request, PRINCIPAL_ATTR):
        cached: Principal | None = getattr(request, PRINCIPAL_ATTR)
        return cached
    token = bearer_token(request)
    principal = settings_principal(token) if token else None
    if principal is None and token is not None and may_be_key(token):
        principal = await sync_to_async(authenticate_token)(token)
    setattr(request, PRINCIPAL_ATTR, principal)
    return principal


def is_authenticated(request: HttpRequest) -> bool:
    """True if the request was authenticated already, or carries the settings token.

    Never queries the database, so async code may call it.
    """
    if getattr(request, PRINCIPAL_ATTR, None) is not None:
        return True
    token = bearer_token(request)
    return token is not None and settings_principal(token) is not None


class BearerAuth(HttpBearer):
    """Bearer auth against ``BILLABLE_API_TOKEN`` and the stored API keys.

    ``request.auth`` is the :class:`~billable.services.api_keys.Principal`.
    """

    async def __call__(self, request: HttpRequest) -> Any:
        """Async, so Ninja awaits it in the event loop (see :func:`arequest_principal`)."""
        return await arequest_principal(request)

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        """The principal of ``token`` (``None``: 401)."""
        return authenticate_token(token)


def insufficient_scope(scope: str) -> JsonResponse:
    """``403`` with the error envelope for a valid key that lacks ``scope``."""
    body = error_body(f"This API key lacks the '{scope}' scope", INSUFFICIENT_SCOPE,
                      required_scope=scope)
    return JsonResponse(body, status=403)


def enforce_scopes(run: F) -> F:
    """View decorator (``router.add_decorator(enforce_scopes, mode="view")``).

    Authenticates the request before Ninja parses it and refuses a key without the route's
    scope with ``403``; requests without a valid token go on to Ninja's own ``401``. The key's
    name is bound to the request's log records (``api_key``).
    """
    scope = required_scope(*route_of(run))

    @functools.wraps(run)
    async def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        principal = await arequest_principal(request)
        if principal is None:
            return await run(request, *args, **kwargs)  # Ninja answers 401
        if not principal.allows(scope):
            return insufficient_scope(scope)
        with log_context(api_key=principal.name):
            return await run(request, *args, **kwargs)

    return guarded  # type: ignore[return-value]


__all__ = [
    "INSUFFICIENT_SCOPE",
    "ROUTE_SCOPES",
    "BearerAuth",
    "arequest_principal",
    "bearer_token",
    "enforce_scopes",
    "insufficient_scope",
    "is_authenticated",
    "request_principal",
    "required_scope",
    "token_is_valid",
]
