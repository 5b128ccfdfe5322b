"""The webhook as a Django async view: one uvicorn serves the API, the admin and the webhook.

    # urls.py
    path("", include("bot_kit.urls"))      # POST /telegram/webhook/

The view only commits the update to the inbox (``bot_kit.inbox.webhook.accept``) and answers;
``python manage.py runbot --workers-only`` processes it. The bot is named by
``TELEGRAM_BOT_TOKEN`` (its numeric id keys the inbox) and the secret by
``TELEGRAM_WEBHOOK_SECRET``, both read from the environment on each request. Without a secret
(and without ``BOT_KIT_WEBHOOK_ALLOW_NO_SECRET = True``) every update is refused with ``503`` —
Telegram keeps it and delivers it again once the secret is set — and system check
``bot_kit.W001`` names the missing setting.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billable.viewtools import outside_request_transactions
from bot_kit.checks import allow_no_secret
from bot_kit.inbox.webhook import SECRET_HEADER, WebhookSecretMissing, accept, webhook_secret

logger = logging.getLogger("bot_kit.inbox")


def bot_id_from_env() -> int | None:
    """The numeric id of ``TELEGRAM_BOT_TOKEN`` (``123456:ABC`` → ``123456``), if set."""
    head = os.environ.get("TELEGRAM_BOT_TOKEN", "").strip().partition(":")[0]
    return int(head) if head.isdigit() else None


def webhook_view(*, bot_id: int | None = None, secret: str | None = None,
                 allow_no_secret: bool | None = None) -> Any:
    """A webhook view for one bot; arguments left out are read from the environment/settings."""

    @csrf_exempt
    @require_POST
    async def telegram_webhook(request: HttpRequest) -> HttpResponse:
        configured = _configuration(bot_id, secret, allow_no_secret)
        if configured is None:
            return HttpResponse(status=503)
        target, expected = configured
        status = await accept(target, request.body, request.headers.get(SECRET_HEADER),
                              secret=expected)
        return HttpResponse(status=status)

    return outside_request_transactions(telegram_webhook)


def _configuration(bot_id: int | None, secret: str | None,
                   opt_out: bool | None) -> tuple[int, str | None] | None:
    target = bot_id if bot_id is not None else bot_id_from_env()
    try:
        expected = webhook_secret(secret, allow_no_secret=allow_no_secret()
                                  if opt_out is None else opt_out)
    except (WebhookSecretMissing, ValueError) as exc:
        logger.error("webhook refused: %s", exc)
        return None
    if target is None:
        logger.error("webhook refused: TELEGRAM_BOT_TOKEN is not set")
        return None
    return target, expected


#: The view mounted by ``bot_kit.urls`` (configured from the environment).
telegram_webhook = webhook_view()

__all__ = ["bot_id_from_env", "telegram_webhook", "webhook_view"]
