"""The Bot (and the bot's BillingConfig) used by bot_kit's management commands."""

from __future__ import annotations

from aiogram import Bot
from django.core.management.base import CommandError

from bot_kit.config import BillingConfig
from bot_kit.management.commands import runbot
from bot_kit.runner import BotConfigurationError, build_bot
from bot_kit.setup import billing_config


def command_bot() -> Bot:
    """A Bot from ``TELEGRAM_BOT_TOKEN`` / ``TELEGRAM_API_SERVER``; tests replace this."""
    try:
        return build_bot()
    except BotConfigurationError as exc:
        raise CommandError(str(exc)) from exc


def command_config(dispatcher: str | None = None) -> BillingConfig:
    """The ``BillingConfig`` given to ``setup_billing`` for the bot's Dispatcher."""
    config = billing_config(runbot.load_dispatcher(dispatcher))
    if config is None:
        raise CommandError("The Dispatcher was not set up with setup_billing()")
    return config
