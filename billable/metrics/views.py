"""The Prometheus exposition endpoint of the web process (bot and worker processes without a web
server use :func:`billable.metrics.start_http_server`).

Mount the view in the host's URLconf::

    path("metrics", billable.metrics.views.metrics_view)

It answers only to a bearer token with the ``metrics:read`` scope (an API key, or
``BILLABLE_API_TOKEN``) — Prometheus sends one with ``authorization: {credentials_file: ...}``
in its scrape config — or to a logged-in staff user. With ``BILLABLE_METRICS_PUBLIC = True`` it
answers everyone: only do that when the network already restricts who reaches it. Without
``prometheus-client`` it answers ``501``.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from billable.api.auth import insufficient_scope, request_principal
from billable.conf import billable_settings
from billable.metrics import instruments
from billable.metrics.server import scrape_registry

SCOPE = "metrics:read"


def _allowed(request: HttpRequest) -> bool | None:
    """True: serve; False: a valid key without the scope (403); None: no credentials (401)."""
    if billable_settings.METRICS_PUBLIC:
        return True
    user = getattr(request, "user", None)
    if getattr(user, "is_active", False) and getattr(user, "is_staff", False):
        return True
    principal = request_principal(request)
    if principal is None:
        return None
    return principal.allows(SCOPE)


def exposition(registry: Any = None) -> tuple[bytes, str]:
    """The text exposition of ``registry`` (default: :func:`~billable.metrics.server.
    scrape_registry`) and its content type."""
    # reason: optional dependency (billable[metrics])
    import prometheus_client

    data = prometheus_client.generate_latest(registry or scrape_registry())
    return data, prometheus_client.CONTENT_TYPE_LATEST


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET`` the metrics in Prometheus' text format (see the module docstring)."""
    allowed = _allowed(request)
    if allowed is None:
        return JsonResponse({"detail": "Unauthorized"}, status=401)
    if not allowed:
        return insufficient_scope(SCOPE)
    if not instruments.enabled():
        return JsonResponse({"success": False, "message": "prometheus-client is not installed",
                             "data": {"error": "metrics_unavailable"}}, status=501)
    data, content_type = exposition()
    return HttpResponse(data, content_type=content_type)


__all__ = ["exposition", "metrics_view"]
