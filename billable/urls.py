"""URLconf of the billable REST API.

Works both ways::

    path("api/v1/billing/", include("billable.urls"))
    path("api/v1/billing/", api.urls)

``api`` is a ``NinjaAPI`` with :data:`billable.api.router` mounted at ``""`` (URL namespace
``billable_default_api``, as in 0.2). The OpenAPI document (``openapi.json``) and the Swagger UI
(``docs``) exist only while ``BILLABLE_SHOW_DOCS`` is true (checked per request) and require the
bearer token too, or a logged-in staff session (so the docs open in a browser from the admin).
The Swagger UI files come from the API itself (``docs/assets/…``, see
:mod:`billable.api.swagger`), so the page works offline without ``"ninja"`` in
``INSTALLED_APPS``.

``health`` is the readiness endpoint (``billable.health``): unauthenticated, ``200`` or ``503``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, URLResolver, path
from ninja import NinjaAPI

from billable import __version__
from billable.api import bearer_token, router, token_is_valid
from billable.api.swagger import OfflineSwagger, add_docs_assets
from billable.conf import billable_settings
from billable.health import areadiness
from billable.viewtools import outside_request_transactions

URLS_NAMESPACE = "billable_default_api"


def docs_guard(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Serve the docs only when enabled, and only to token holders or staff users."""

    @functools.wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not billable_settings.SHOW_DOCS:
            raise Http404("API documentation is disabled")
        user = getattr(request, "user", None)
        is_staff = bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False))
        if not (is_staff or token_is_valid(bearer_token(request))):
            return JsonResponse({"detail": "Unauthorized"}, status=401)
        return view(request, *args, **kwargs)

    return guarded


class BillingAPI(NinjaAPI):
    """The billing ``NinjaAPI``: its views never run inside a request-wide transaction.

    Under a host's ``ATOMIC_REQUESTS = True`` Django would wrap every view in ``atomic`` and
    refuse the async ones with a 500; each service call commits on its own instead
    (:mod:`billable.viewtools`).
    """

    @property
    def urls(self) -> tuple[list[URLResolver | URLPattern], str, str]:
        patterns, app_name, namespace = super().urls
        for pattern in patterns:
            if isinstance(pattern, URLPattern):
                outside_request_transactions(pattern.callback)
        return patterns, app_name, namespace


def build_api(*, urls_namespace: str = URLS_NAMESPACE) -> NinjaAPI:
    """A new ``NinjaAPI`` serving the billing router (one per mount; the router is reusable)."""
    api = BillingAPI(
        title=str(billable_settings.API_TITLE),
        version=__version__,
        description="Billing engine: catalog, wallet, ledger, orders, trials, referrals.",
        urls_namespace=urls_namespace,
        docs=OfflineSwagger(),
        docs_url="/docs/",
        openapi_url="/openapi.json",
        docs_decorator=docs_guard,
    )
    add_docs_assets(api)
    api.add_router("", router)
    api.get("/health", auth=None, include_in_schema=False)(health)
    return api


async def health(request: HttpRequest) -> HttpResponse:
    """Readiness of this process (see ``billable.health``); never cached."""
    ready, body = await areadiness()
    response = JsonResponse(body, status=200 if ready else 503)
    response["Cache-Control"] = "no-store"
    return response


api = build_api()

urlpatterns = [path("", api.urls)]

__all__ = ["URLS_NAMESPACE", "BillingAPI", "api", "build_api", "docs_guard", "health",
           "urlpatterns"]
