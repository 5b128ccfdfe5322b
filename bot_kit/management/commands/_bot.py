"""The Bot used by bot_kit's management commands (from ``TELEGRAM_BOT_TOKEN``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.management.base import CommandError

if TYPE_CHECKING:
    from aiogram import Bot


def command_bot() -> Bot:
    """A Bot from ``TELEGRAM_BOT_TOKEN`` / ``TELEGRAM_API_SERVER``; tests replace this."""
    from bot_kit.runner import BotConfigurationError, build_bot

    try:
        return build_bot()
    except BotConfigurationError as exc:
        raise CommandError(str(exc)) from exc
