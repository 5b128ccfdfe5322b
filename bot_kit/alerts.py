"""Alert messages: send the pending low-balance and expiry notices to the customers' chats.

``billable``'s scan (:class:`billable.growth.alerts.AlertService`) records each notice once
per crossing per batch; :class:`AlertSender` delivers each at most once: a notice is claimed by
a conditional update (``pending → sent``) before the message goes out, so two senders never
send it twice; a Bot API refusal marks it ``failed`` (never retried — a reminder that arrives
hours late is worse than none). Customers who sent ``/notifications off``, or who have no
Telegram identity, are ``skipped``. The message is localized and carries a buy button (the
rule's ``buy_offer``, else the configured offers that contain the product).

Run it with ``manage.py billable_notify`` (scan + send) or the Celery task ``bot_kit.notify``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from asgiref.sync import sync_to_async

from bot_kit import billing
from bot_kit.callbacks import buy_data
from bot_kit.growth_billing import language_of
from bot_kit.paywall import format_price
from bot_kit.texts import get_text, pick_language

if TYPE_CHECKING:
    from aiogram import Bot

    from bot_kit.config import BillingConfig

logger = logging.getLogger("bot_kit.alerts")


@dataclass(frozen=True)
class Delivery:
    """One claimed notice, ready to send."""

    notice_id: int
    chat_id: int
    text: str
    markup: InlineKeyboardMarkup | None


def _buy_offers(notice: Any, config: BillingConfig) -> list[Any]:
    return billing.alert_buy_offers(notice, config.offers)


def _text(notice: Any, lang: str, config: BillingConfig) -> str:
    if notice.kind == "low_balance":
        return get_text("alert_low_balance", lang, config, balance=notice.balance,
                        product=notice.product.name)
    when = notice.expires_at.strftime("%Y-%m-%d") if notice.expires_at else "—"
    return get_text("alert_expiring", lang, config, product=notice.product.name, date=when)


def _markup(offers: list[Any], lang: str, config: BillingConfig) -> InlineKeyboardMarkup | None:
    rows = [[InlineKeyboardButton(
        text=get_text("alert_buy_button", lang, config, name=o.name,
                      price=format_price(o.price, o.currency)),
        callback_data=buy_data(o.sku))] for o in offers]
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def claim_due(config: BillingConfig, *, limit: int = 100) -> list[Delivery]:
    """Claim up to ``limit`` pending notices; skip opted-out customers and those without a
    Telegram chat; return what to send."""
    deliveries = []
    for notice, identity in billing.claim_alert_notices(provider=config.telegram_provider,
                                                        limit=limit):
        lang = pick_language(language_of(identity), config)
        deliveries.append(Delivery(notice.pk, int(identity.external_id),
                                   _text(notice, lang, config),
                                   _markup(_buy_offers(notice, config), lang, config)))
    return deliveries


def _mark_failed(notice_id: int) -> None:
    billing.mark_alert_failed(notice_id)


class AlertSender:
    """Sends the pending alert notices through ``bot``."""

    def __init__(self, bot: Bot, config: BillingConfig) -> None:
        self.bot = bot
        self.config = config

    async def send_due(self, *, limit: int = 100) -> dict[str, int]:
        """Claim and send up to ``limit`` notices; returns ``{"sent": n, "failed": m}``."""
        counts = {"sent": 0, "failed": 0}
        for delivery in await sync_to_async(claim_due)(self.config, limit=limit):
            try:
                await self.bot.send_message(delivery.chat_id, delivery.text,
                                            reply_markup=delivery.markup, parse_mode=None)
            except Exception:
                logger.warning("alert %s could not be sent", delivery.notice_id, exc_info=True)
                await sync_to_async(_mark_failed)(delivery.notice_id)
                counts["failed"] += 1
            else:
                counts["sent"] += 1
        return counts

    async def scan_and_send(self, *, limit: int = 100) -> dict[str, int]:
        """Run the billable scan, then send what it found (and anything still pending)."""
        result = await billing.ascan_alerts()
        counts = await self.send_due(limit=limit)
        return {"low_balance": result.low_balance, "expiring": result.expiring, **counts}


__all__ = ["AlertSender", "Delivery", "claim_due"]
