"""The billable REST API: one Django Ninja ``router`` with bearer auth attached on the router.

Mount it through ``billable.urls`` (``include("billable.urls")`` or ``api.urls``), or test it
directly with ``ninja.testing.TestAsyncClient(router)`` and router-relative paths (``/catalog``).

Auth: ``Authorization: Bearer <BILLABLE_API_TOKEN>`` (scheme case-insensitive), compared in
constant time. With the token unset or empty every request is refused with
``401 {"detail": "Unauthorized"}`` — the API is never open.
"""

from __future__ import annotations

import hmac
from typing import Any

from django.http import HttpRequest
from ninja import Router
from ninja.security import HttpBearer

from billable.api import catalog, customers, identify, orders, referrals, trials, wallet
from billable.api.errors import guard_request, translate_errors
from billable.api.users import aresolve_user_id_by_identity
from billable.conf import billable_settings


def token_is_valid(token: str | None) -> bool:
    """True if ``token`` equals the configured ``BILLABLE_API_TOKEN`` (constant-time).

    An unset or empty setting never matches, whatever the token.
    """
    expected = billable_settings.API_TOKEN
    if not expected or not token:
        return False
    return hmac.compare_digest(token.encode("utf-8"), str(expected).encode("utf-8"))


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme in any case)."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class BearerAuth(HttpBearer):
    """Bearer-token auth against ``BILLABLE_API_TOKEN``, read on every request."""

    def __call__(self, request: HttpRequest) -> Any:
        return self.authenticate(request, bearer_token(request) or "")

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        """Return the token when it is valid (Ninja stores it in ``request.auth``)."""
        return token if token_is_valid(token) else None


#: The 0.2 name of the auth class.
APIKeyAuth = BearerAuth

#: The billing router: every operation requires the bearer token and maps billable errors.
router = Router(tags=["billing"], auth=BearerAuth())
router.add_decorator(translate_errors, mode="operation")
router.add_decorator(guard_request, mode="view")
for _domain in (identify, catalog, wallet, orders, trials, referrals, customers):
    router.add_router("", _domain.router)

__all__ = [
    "APIKeyAuth",
    "BearerAuth",
    "aresolve_user_id_by_identity",
    "bearer_token",
    "router",
    "token_is_valid",
]
