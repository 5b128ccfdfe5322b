"""The Bot (and the bot's BillingConfig) used by bot_kit's management commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.management.base import CommandError

if TYPE_CHECKING:
    from aiogram import Bot

    from bot_kit.config import BillingConfig


def command_bot() -> Bot:
    """A Bot from ``TELEGRAM_BOT_TOKEN`` / ``TELEGRAM_API_SERVER``; tests replace this."""
    from bot_kit.runner import BotConfigurationError, build_bot

    try:
        return build_bot()
    except BotConfigurationError as exc:
        raise CommandError(str(exc)) from exc


def command_config(dispatcher: str | None = None) -> BillingConfig:
    """The ``BillingConfig`` given to ``setup_billing`` for the bot's Dispatcher."""
    from bot_kit.management.commands.runbot import load_dispatcher
    from bot_kit.setup import billing_config

    config = billing_config(load_dispatcher(dispatcher))
    if config is None:
        raise CommandError("The Dispatcher was not set up with setup_billing()")
    return config
