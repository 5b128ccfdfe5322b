"""bot_kit's readiness probes, and the ``/healthz`` handler of the kit's aiohttp servers.

Registered in ``BotKitConfig.ready`` into ``billable.health``, so the API's
``/api/v1/billing/health`` and the webhook server's ``/healthz`` answer the same way:

* ``redis`` (required, only when ``BOT_KIT_REDIS_URL`` is set) — ``PING`` answered within 1 s;
* ``inbox_oldest_pending_seconds`` and ``refund_oldest_pending_seconds`` (informational) — how
  long the oldest unprocessed update / unsent refund has waited (``null`` when none). Alert on
  them: a growing number means no worker is draining, or one dependency is down.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from django.conf import settings
from django.db.models import Min
from django.utils import timezone

from billable.health import NOT_CONFIGURED, areadiness, register_probe


def redis_url() -> str | None:
    """``BOT_KIT_REDIS_URL``: the Redis the bot uses (FSM storage, throttling), if any."""
    return getattr(settings, "BOT_KIT_REDIS_URL", None) or None


def redis_ping() -> Any:
    """Raise unless the configured Redis answers ``PING`` within a second."""
    url = redis_url()
    if url is None:
        return NOT_CONFIGURED
    from redis import Redis  # optional dependency (the "redis" extra), needed only when set

    client = Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return client.ping()
    finally:
        client.close()


def inbox_age() -> float | None:
    """Seconds the oldest pending inbox update has waited."""
    # app registry: the inbox store loads bot_kit.models, so it is imported on first use
    from bot_kit.inbox.store import oldest_pending_age

    return oldest_pending_age()


def refund_age() -> float | None:
    """Seconds the oldest pending refund has waited."""
    # app registry: bot_kit.models loads on first use (this module is imported before)
    from bot_kit.models import RefundRequest

    oldest = RefundRequest.objects.filter(state=RefundRequest.State.PENDING).aggregate(
        at=Min("created_at"))["at"]
    return None if oldest is None else max((timezone.now() - oldest).total_seconds(), 0.0)


def register() -> None:
    """Add the kit's probes to ``billable.health`` (called once by the app config)."""
    register_probe("redis", redis_ping)
    register_probe("inbox_oldest_pending_seconds", inbox_age, required=False)
    register_probe("refund_oldest_pending_seconds", refund_age, required=False)


async def aiohttp_readiness(request: Any) -> Any:
    """``GET /healthz`` of the webhook / worker servers: ``200`` when ready, else ``503``."""
    ready, body = await areadiness()
    return web.json_response(body, status=200 if ready else 503,
                             headers={"Cache-Control": "no-store"})


__all__ = ["aiohttp_readiness", "inbox_age", "redis_ping", "redis_url", "refund_age",
           "register"]
