"""The billable REST API: one Django Ninja ``router`` with bearer auth attached on the router.

Mount it through ``billable.urls`` (``include("billable.urls")`` or ``api.urls``), or test it
directly with ``ninja.testing.TestAsyncClient(router)`` and router-relative paths (``/catalog``).

Auth (:mod:`billable.api.auth`): ``Authorization: Bearer <token>`` (scheme case-insensitive)
with ``BILLABLE_API_TOKEN`` (full scope, compared in constant time) or a stored API key, which
needs the endpoint's scope. Missing or invalid tokens get ``401 {"detail": "Unauthorized"}``,
a key without the scope ``403``; with no token configured and no key every request is refused.
"""

from __future__ import annotations

from ninja import Router

from billable.api import (
    catalog,
    customers,
    growth,
    identify,
    orders,
    referrals,
    reports,
    trials,
    wallet,
)
from billable.api.auth import (
    ROUTE_SCOPES,
    BearerAuth,
    bearer_token,
    enforce_scopes,
    token_is_valid,
)
from billable.api.errors import guard_request, outages_are_503, translate_errors
from billable.api.observe import observe_requests
from billable.api.users import aresolve_user_id_by_identity

#: The 0.2 name of the auth class.
APIKeyAuth = BearerAuth

#: The billing router: every operation requires a token with its scope and maps billable
#: errors. View decorators added later wrap the earlier ones: metrics see every answer, scopes
#: are checked before the body is read, a database outage in the auth is a 503.
router = Router(tags=["billing"], auth=BearerAuth())
router.add_decorator(translate_errors, mode="operation")
router.add_decorator(guard_request, mode="view")
router.add_decorator(enforce_scopes, mode="view")
router.add_decorator(outages_are_503, mode="view")
router.add_decorator(observe_requests, mode="view")
for _domain in (identify, catalog, wallet, orders, trials, referrals, customers, reports,
                growth):
    router.add_router("", _domain.router)

__all__ = [
    "ROUTE_SCOPES",
    "APIKeyAuth",
    "BearerAuth",
    "aresolve_user_id_by_identity",
    "bearer_token",
    "router",
    "token_is_valid",
]
