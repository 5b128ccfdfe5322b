"""``/trial``: claim the configured free offer once per Telegram identity."""

from __future__ import annotations

import logging

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from billable.exceptions import BillableError, TrialAlreadyUsed
from bot_kit import billing
from bot_kit.config import BillingConfig
from bot_kit.texts import error_text, get_text, user_language

logger = logging.getLogger("bot_kit.trials")


def create_router(config: BillingConfig) -> Router:
    """A router with the trial command (``config.command("trial")``; none when removed)."""
    router = Router(name="bot_kit.trials")
    command = config.command("trial")
    if command is None:
        return router

    @router.message(Command(command))
    async def trial(message: Message, billing_lang: str | None = None,
                    billing_user_id: int | None = None) -> None:
        lang = await user_language(config, message.from_user, billing_lang)
        await message.answer(await claim_text(config, lang=lang,
                                              user_id=billing_user_id,
                                              telegram_id=message.from_user.id
                                              if message.from_user else None), parse_mode=None)

    return router


async def claim_text(config: BillingConfig, *, lang: str, user_id: int | None,
                     telegram_id: int | None) -> str:
    """Claim the trial for the user and return what to tell them."""
    if config.trial_offer is None:
        return get_text("trial_unavailable", lang, config)
    if user_id is None or telegram_id is None:
        return get_text("error_unavailable", lang, config)
    try:
        batches = await billing.aclaim_trial(
            user_id, config.trial_offer,
            identities={config.trial_identity_type: str(telegram_id)},
            metadata=config.bot_metadata() or None)
    except TrialAlreadyUsed:
        return get_text("trial_already_used", lang, config)
    except BillableError as exc:
        logger.warning("Trial %s refused for user %s: %s", config.trial_offer, user_id, exc)
        if exc.code in ("offer_not_found", "invalid_price", "invalid_input"):
            return get_text("trial_unavailable", lang, config)
        return error_text(exc.code, lang, config)
    granted = await billing.agranted_products(batches, lang)
    products = ", ".join(f"{name} × {units}" for name, units in granted)
    return get_text("trial_granted", lang, config, products=products)


__all__ = ["claim_text", "create_router"]
