"""Report endpoints: the revenue dashboard's figures as JSON (``GET /reports/dashboard``).

``?start=YYYY-MM-DD&end=YYYY-MM-DD&bot=<id>`` as in the admin page (defaults: the last 30
days, every bot). Bad input answers ``400`` with the error envelope and a stable code
(``invalid_date``, ``invalid_date_range``, ``date_range_too_long``, ``invalid_bot_id``). The
figures and their shape are defined in docs/dashboard.md; scope ``reports:read``.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from ninja import Router

from billable.schemas.common import CommonResponse, responses
from billable.selectors.dashboard import build_dashboard, parse_query
from billable.selectors.dashboard_export import dashboard_data

router = Router()


def _dashboard(start: str | None, end: str | None, bot: str | None) -> dict[str, Any]:
    query = parse_query(start=start, end=end, bot=bot)
    return dashboard_data(build_dashboard(query))


@router.get("/reports/dashboard", response=responses(CommonResponse))
async def revenue_dashboard(request: HttpRequest, start: str | None = None,
                            end: str | None = None, bot: str | None = None) -> Any:
    """Revenue per day and per offer (per currency), paying users, refund rate, trial → paid
    conversion, consumption per product and subscriptions (when an app contributes them)."""
    data = await sync_to_async(_dashboard)(start, end, bot)
    return {"success": True, "message": "Dashboard figures", "data": data}


__all__ = ["revenue_dashboard", "router"]
