"""``/balance``: a summary of the user's wallet.

An entitlement (``period`` / ``unlimited`` product) shows the end of the **current contiguous
entitlement**: the batch covering now, extended by every later batch that starts before (or
when) the previous one ends — a renewal paid ahead of time counts, a gap stops the chain.
"""

from __future__ import annotations

from typing import Any

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot_kit import billing
from bot_kit.config import BillingConfig
from bot_kit.texts import get_text, split_message, user_language


def create_router(config: BillingConfig) -> Router:
    """A router with the balance command (``config.command("balance")``; none when removed)."""
    router = Router(name="bot_kit.balance")
    command = config.command("balance")
    if command is None:
        return router

    @router.message(Command(command))
    async def balance(message: Message, billing_lang: str | None = None,
                      billing_user_id: int | None = None) -> None:
        lang = await user_language(config, message.from_user, billing_lang)
        if billing_user_id is None:
            await message.answer(get_text("error_unavailable", lang, config), parse_mode=None)
            return
        # one message per 4096 characters: a wallet of many products is shown whole
        for part in split_message(await balance_text(config, lang=lang,
                                                     user_id=billing_user_id)):
            await message.answer(part, parse_mode=None)

    return router


async def balance_text(config: BillingConfig, *, lang: str, user_id: int) -> str:
    """The localized wallet summary (one line per product with a spendable balance); may be
    longer than one Telegram message: ``/balance`` sends it in parts (``split_message``)."""
    summary = await billing.asummary(user_id)
    if not summary:
        return get_text("balance_empty", lang, config)
    ends = await billing.aentitlement_ends(user_id)
    for key, end in ends.items():
        if key in summary:
            summary[key]["expiry"] = end
    names = await billing.aproduct_names(summary, lang)
    lines = [get_text("balance_header", lang, config)]
    for key in sorted(summary):
        lines.append(_line(summary[key], names.get(key, key), lang, config))
    return "\n".join(lines)


def _line(entry: dict[str, Any], name: str, lang: str, config: BillingConfig) -> str:
    """One product: a counter (maybe expiring), or an entitlement (until a date / unlimited)."""
    expiry = entry.get("expiry")
    when = ""
    if expiry:
        when = expiry.strftime("%Y-%m-%d") if hasattr(expiry, "strftime") else str(expiry)[:10]
    if entry.get("is_unlimited"):
        if when:
            return get_text("balance_line_until", lang, config, name=name, expiry=when)
        return get_text("balance_line_unlimited", lang, config, name=name)
    remaining = entry.get("remaining", 0)
    if when:
        return get_text("balance_line_expiry", lang, config, name=name, remaining=remaining,
                        expiry=when)
    return get_text("balance_line", lang, config, name=name, remaining=remaining)


__all__ = ["balance_text", "create_router"]
