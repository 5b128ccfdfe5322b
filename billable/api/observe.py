"""Request metrics of the REST API: ``billable_api_requests_total{method,route,status}``.

A view decorator on the billing router (``router.add_decorator(observe_requests, mode="view")``)
so every answer — 401 and 403 included — is counted by its route template (``/orders/{order_id}``,
never the concrete URL, so the number of series stays bounded). A no-op without
``prometheus-client``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.http import HttpRequest

from billable.api.routes import route_of
from billable.metrics import instruments

F = TypeVar("F", bound=Callable[..., Any])


def observe_requests(run: F) -> F:
    """Count and time every request of the decorated operation."""
    method, route = route_of(run)

    @functools.wraps(run)
    async def observed(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        status = 500
        try:
            response = await run(request, *args, **kwargs)
            status = int(getattr(response, "status_code", 200))
            return response
        finally:
            instruments.record_api_request(method, route, status,
                                           time.perf_counter() - started)

    return observed  # type: ignore[return-value]


__all__ = ["observe_requests"]
