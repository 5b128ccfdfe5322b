"""System checks of bot_kit (ids ``bot_kit.E00x`` / ``bot_kit.W00x``)."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.urls import NoReverseMatch, reverse

from bot_kit.inbox.webhook import SECRET_ENV

WEBHOOK_URL_NAME = "bot_kit_webhook"


def check_webhook_secret(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """``bot_kit.E001``: the webhook view is routed but no secret token is configured."""
    try:
        reverse(WEBHOOK_URL_NAME)
    except NoReverseMatch:
        return []
    if os.environ.get(SECRET_ENV, "").strip() or allow_no_secret():
        return []
    return [Error(
        f"The Telegram webhook view is routed but {SECRET_ENV} is not set: it refuses every "
        "update until it is.",
        hint=f"Set {SECRET_ENV} (and pass it to setWebhook), or opt out explicitly with "
             "BOT_KIT_WEBHOOK_ALLOW_NO_SECRET = True.",
        id="bot_kit.E001")]


def allow_no_secret() -> bool:
    """``BOT_KIT_WEBHOOK_ALLOW_NO_SECRET``: the host's explicit opt-out (default False)."""
    return bool(getattr(settings, "BOT_KIT_WEBHOOK_ALLOW_NO_SECRET", False))


def register_all() -> None:
    """Register the kit's checks (called once by the app config)."""
    register(check_webhook_secret, "bot_kit")


__all__ = ["allow_no_secret", "check_webhook_secret", "register_all"]
