"""System checks of bot_kit (ids ``bot_kit.W00x``)."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.checks import Warning, register
from django.urls import NoReverseMatch, reverse

from bot_kit.inbox.webhook import SECRET_ENV

WEBHOOK_URL_NAME = "bot_kit_webhook"


def check_webhook_secret(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """``bot_kit.W001``: the webhook view is routed but no secret token is configured.

    A warning, not an error: the view already refuses every update (fail closed), and an
    error would also stop ``migrate`` in projects that do not use the webhook yet.
    """
    try:
        reverse(WEBHOOK_URL_NAME)
    except NoReverseMatch:
        return []
    if os.environ.get(SECRET_ENV, "").strip() or allow_no_secret():
        return []
    return [Warning(
        f"The Telegram webhook view is routed but {SECRET_ENV} is not set: it refuses every "
        "update until it is.",
        hint=f"Set {SECRET_ENV} (and pass it to setWebhook), or opt out explicitly with "
             "BOT_KIT_WEBHOOK_ALLOW_NO_SECRET = True.",
        id="bot_kit.W001")]


def allow_no_secret() -> bool:
    """``BOT_KIT_WEBHOOK_ALLOW_NO_SECRET``: the host's explicit opt-out (default False)."""
    return bool(getattr(settings, "BOT_KIT_WEBHOOK_ALLOW_NO_SECRET", False))


def register_all() -> None:
    """Register the kit's checks (called once by the app config)."""
    register(check_webhook_secret, "bot_kit")


__all__ = ["allow_no_secret", "check_webhook_secret", "register_all"]
