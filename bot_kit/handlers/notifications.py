"""``/notifications [on|off]``: a customer's opt-out of low-balance and expiry messages."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from asgiref.sync import sync_to_async

from bot_kit.config import BillingConfig
from bot_kit.growth_billing import alerts_enabled, set_alerts_enabled
from bot_kit.payments.handlers import resolve_user_id
from bot_kit.texts import get_text, user_language

ON_WORDS = frozenset({"on", "yes", "1", "вкл", "да"})
OFF_WORDS = frozenset({"off", "no", "0", "выкл", "нет"})


def create_router(config: BillingConfig) -> Router:
    """``/notifications`` shows the state, ``on`` / ``off`` sets it
    (``config.command("notifications")``; ``None`` disables it)."""
    router = Router(name="bot_kit.notifications")
    name = config.command("notifications")
    if name is None:
        return router

    @router.message(Command(name))
    async def notifications(message: Message, command: CommandObject,
                            billing_user_id: int | None = None,
                            billing_lang: str | None = None) -> None:
        tg_user = message.from_user
        if tg_user is None:
            return
        lang = await user_language(config, tg_user, billing_lang)
        user_id = await resolve_user_id(billing_user_id, tg_user, config)
        word = (command.args or "").strip().lower()
        if word in ON_WORDS or word in OFF_WORDS:
            enabled = await sync_to_async(set_alerts_enabled)(user_id, word in ON_WORDS)
        else:
            enabled = await sync_to_async(alerts_enabled)(user_id)
        await message.answer(get_text("notifications_on" if enabled else "notifications_off",
                                      lang, config), parse_mode=None)

    return router


__all__ = ["create_router"]
