"""Receiving webhook updates: check the secret, commit the update, only then answer ``200``.

:func:`accept` is the one implementation behind both servers of the kit: the aiohttp server of
``runbot --webhook`` (:func:`webhook_app`) and the Django view (``bot_kit.views``) that lets one
uvicorn serve the API, the admin and the webhook. Answers:

* ``401`` — the ``X-Telegram-Bot-Api-Secret-Token`` header is missing or wrong (compared in
  constant time); nothing is stored;
* ``400`` — the body is not an update; ``503`` — the inbox could not be written (Telegram will
  deliver the update again);
* ``200`` — the update is committed (or was already: a redelivery).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bot_kit.health import aiohttp_readiness
from bot_kit.inbox import store
from bot_kit.resilience import Outage, arecycle

logger = logging.getLogger("bot_kit.inbox")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
SECRET_ENV = "TELEGRAM_WEBHOOK_SECRET"
_SECRET_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_database = Outage("database (webhook inbox)", logger)


class WebhookSecretMissing(RuntimeError):
    """A webhook server was started without a secret token and without an explicit opt-out."""


def webhook_secret(secret: str | None = None, *, allow_no_secret: bool = False) -> str | None:
    """The secret to require: ``secret``, else ``TELEGRAM_WEBHOOK_SECRET``.

    Raises :class:`WebhookSecretMissing` when there is none and ``allow_no_secret`` is false,
    and ``ValueError`` for a secret Telegram would refuse (1–256 of ``A-Z a-z 0-9 _ -``).
    """
    secret = (secret or os.environ.get(SECRET_ENV, "")).strip() or None
    if secret is None:
        if allow_no_secret:
            return None
        raise WebhookSecretMissing(
            f"Refusing to serve a webhook without a secret token: set {SECRET_ENV} "
            "(1-256 characters of A-Z a-z 0-9 _ -), or opt out explicitly "
            "(runbot --allow-no-secret / allow_no_secret=True)")
    if not _SECRET_SHAPE.match(secret):
        raise ValueError(f"{SECRET_ENV} may only hold 1-256 characters of A-Z a-z 0-9 _ -")
    return secret


def secret_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of the secret header (anything goes when none is required)."""
    if expected is None:
        return True
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def parse_update(body: bytes) -> dict[str, Any] | None:
    """The update in ``body``, or ``None`` when it is not a JSON object with an ``update_id``."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    update_id = data.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        return None
    return data


async def accept(bot_id: int, body: bytes, header: str | None, *, secret: str | None,
                 on_stored: Callable[[], None] | None = None) -> int:
    """Check, store, and return the HTTP status to answer (see the module docstring)."""
    if not secret_matches(secret, header):
        return 401
    update = parse_update(body)
    if update is None:
        return 400
    try:
        await store.astore(bot_id, update)
    except Exception as exc:
        _database.failed(exc)
        await arecycle()
        return 503
    _database.recovered()
    if on_stored is not None:
        on_stored()
    return 200


def webhook_app(bot_id: int, *, path: str, secret: str | None,
                on_stored: Callable[[], None] | None = None) -> Any:
    """An aiohttp application: ``POST path`` stores updates, ``GET /healthz`` is readiness."""
    async def receive(request: web.Request) -> web.Response:
        status = await accept(bot_id, await request.read(), request.headers.get(SECRET_HEADER),
                              secret=secret, on_stored=on_stored)
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post(path, receive)
    app.router.add_get("/healthz", aiohttp_readiness)
    return app


__all__ = [
    "SECRET_ENV",
    "SECRET_HEADER",
    "WebhookSecretMissing",
    "accept",
    "parse_update",
    "secret_matches",
    "webhook_app",
    "webhook_secret",
]
