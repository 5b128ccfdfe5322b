"""``/trial``: claim the configured free offer once per Telegram identity."""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot_kit.config import BillingConfig
from bot_kit.texts import error_text, get_text, user_language

logger = logging.getLogger("bot_kit.trials")


def create_router(config: BillingConfig) -> Router:
    """A router with the trial command (name from ``config.trial_command``)."""
    router = Router(name="bot_kit.trials")
    name = config.commands.get("trial", config.trial_command)
    if name is None:
        return router

    @router.message(Command(name))
    async def trial(message: Message, billing_lang: str | None = None,
                    billing_user_id: int | None = None) -> None:
        lang = await user_language(config, message.from_user, billing_lang)
        await message.answer(await claim_text(config, lang=lang,
                                              user_id=billing_user_id,
                                              telegram_id=message.from_user.id
                                              if message.from_user else None))

    return router


async def claim_text(config: BillingConfig, *, lang: str, user_id: int | None,
                     telegram_id: int | None) -> str:
    """Claim the trial for the user and return what to tell them."""
    from billable.exceptions import BillableError, TrialAlreadyUsed
    from billable.services.trials import TrialService

    if config.trial_offer is None:
        return get_text("trial_unavailable", lang, config)
    if user_id is None or telegram_id is None:
        return get_text("error_unavailable", lang, config)
    try:
        batches = await TrialService.aclaim_trial(
            user_id, config.trial_offer, identities={"telegram": str(telegram_id)})
    except TrialAlreadyUsed:
        return get_text("trial_already_used", lang, config)
    except BillableError as exc:
        logger.warning("Trial %s refused for user %s: %s", config.trial_offer, user_id, exc)
        if exc.code in ("offer_not_found", "invalid_price", "invalid_input"):
            return get_text("trial_unavailable", lang, config)
        return error_text(exc.code, lang, config)
    return get_text("trial_granted", lang, config, products=await _describe(batches, lang))


async def _describe(batches: list[Any], lang: str | None = None) -> str:
    """``"Predictions × 3, Pro × 1"`` for the granted batches (no lazy loads in async code)."""
    from billable.models import Product

    totals: dict[Any, int] = {}
    for batch in batches:
        totals[batch.product_id] = totals.get(batch.product_id, 0) + batch.initial_quantity
    names = {p.pk: p.localized_name(lang) async for p in Product.objects.filter(
        pk__in=list(totals))}
    return ", ".join(f"{names.get(pk, pk)} × {qty}" for pk, qty in sorted(
        totals.items(), key=lambda item: str(names.get(item[0], item[0]))))


__all__ = ["claim_text", "create_router"]
