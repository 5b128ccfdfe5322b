"""``/paysupport``: always answers — also to unknown users and while the database is down."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot_kit.config import BillingConfig
from bot_kit.texts import get_text, user_language


def create_router(config: BillingConfig) -> Router:
    """A router answering the support command with the (overridable) ``paysupport`` text."""
    router = Router(name="bot_kit.support")
    command = config.command("paysupport")
    if command is None:
        return router

    @router.message(Command(command))
    async def paysupport(message: Message, billing_lang: str | None = None) -> None:
        lang = await user_language(config, message.from_user, billing_lang)
        await message.answer(get_text("paysupport", lang, config), parse_mode=None)

    return router


__all__ = ["create_router"]
