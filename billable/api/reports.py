"""Report endpoints: the revenue dashboard's figures as JSON (``GET /reports/dashboard``).

``?start=YYYY-MM-DD&end=YYYY-MM-DD&bot=<id>`` as in the admin page (defaults: the last 30
days, every bot). Bad input answers ``400`` with the error envelope and a stable code
(``invalid_date``, ``invalid_date_range``, ``date_range_too_long``, ``invalid_bot_id``). The
figures and their shape are defined in docs/dashboard.md; scope ``reports:read``.
"""

from __future__ import annotations

from typing import Annotated, Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from ninja import Router

from billable.schemas.common import CommonResponse, hint, responses
from billable.selectors.dashboard import build_dashboard, parse_query
from billable.selectors.dashboard_export import dashboard_data
from billable.selectors.dashboard_query import MAX_BOT_ID_LENGTH

router = Router()

#: ``start`` / ``end`` as ``parse_query`` reads them (``400`` ``invalid_date`` otherwise):
#: ``YYYY-MM-DD``, surrounding spaces ignored, blank meaning the default.
DateText = Annotated[str, hint(pattern=r"^\s*([0-9]{4}-[0-9]{2}-[0-9]{2})?\s*$")]
#: ``bot``: printable, no surrounding whitespace (``400`` ``invalid_bot_id`` otherwise).
_PRINTABLE = r"[^\s\u0000-\u001f\u007f-\u009f]"
BotText = Annotated[str, hint(
    maxLength=MAX_BOT_ID_LENGTH,
    pattern=rf"^({_PRINTABLE}([^\u0000-\u001f\u007f-\u009f]*{_PRINTABLE})?)?$")]


def _dashboard(start: str | None, end: str | None, bot: str | None) -> dict[str, Any]:
    query = parse_query(start=start, end=end, bot=bot)
    return dashboard_data(build_dashboard(query))


@router.get("/reports/dashboard", response=responses(CommonResponse))
async def revenue_dashboard(request: HttpRequest, start: DateText | None = None,
                            end: DateText | None = None, bot: BotText | None = None) -> Any:
    """Revenue per day and per offer (per currency), paying users, refund rate, trial → paid
    conversion, consumption per product and subscriptions (when an app contributes them)."""
    data = await sync_to_async(_dashboard)(start, end, bot)
    return {"success": True, "message": "Dashboard figures", "data": data}


__all__ = ["revenue_dashboard", "router"]
