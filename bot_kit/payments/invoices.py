"""From an offer to a Telegram invoice: the order, the signed payload and the Bot API call.

Telegram rules applied here: exactly one ``LabeledPrice``; ``XTR`` (Stars) invoices carry an
empty provider token and whole-star amounts; fiat invoices need ``config.provider_token`` and use
the currency's smallest units; title 1–32 and description 1–255 characters (truncated safely, never
splitting a character Telegram counts in UTF-16).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import LabeledPrice
from asgiref.sync import sync_to_async

from bot_kit import billing
from bot_kit.payments.errors import NotPurchasable
from bot_kit.payments.payload import KIND_ORDER, InvoicePayload, sign_payload

if TYPE_CHECKING:
    from aiogram import Bot

    from bot_kit.config import BillingConfig

logger = logging.getLogger("bot_kit.payments")

STARS = "XTR"
TITLE_LIMIT = 32
DESCRIPTION_LIMIT = 255
#: Telegram currencies whose smallest unit is the whole unit (``exp`` = 0 in currencies.json).
ZERO_EXPONENT = frozenset({"XTR", "CLP", "ISK", "JPY", "KRW", "PYG", "UGX", "VND"})


def to_minor_units(amount: Decimal, currency: str) -> int:
    """``amount`` in the smallest units of ``currency`` (Stars: whole stars; USD: cents)."""
    exponent = 0 if currency.upper() in ZERO_EXPONENT else 2
    scaled = Decimal(amount) * (10 ** exponent)
    if scaled != scaled.to_integral_value():
        raise NotPurchasable(f"Price {amount} is not a whole number of {currency} units")
    return int(scaled)


def from_minor_units(amount: int, currency: str) -> Decimal:
    """The inverse of ``to_minor_units``: ``145`` USD cents → ``Decimal("1.45")``."""
    exponent = 0 if currency.upper() in ZERO_EXPONENT else 2
    return Decimal(int(amount)).scaleb(-exponent)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def truncate_text(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-16 code units, ending with ``…`` when cut."""
    text = " ".join((text or "").split())
    if _utf16_len(text) <= limit:
        return text
    kept: list[str] = []
    used = 1
    for char in text:
        size = _utf16_len(char)
        if used + size > limit:
            break
        kept.append(char)
        used += size
    return "".join(kept).rstrip() + "…"


@dataclass(frozen=True)
class InvoiceRequest:
    """Everything needed for ``sendInvoice`` / ``createInvoiceLink`` of one order."""

    order_id: int
    title: str
    description: str
    payload: str
    currency: str
    amount: int
    provider_token: str

    def prices(self) -> list[LabeledPrice]:
        return [LabeledPrice(label=self.title, amount=self.amount)]


def is_purchasable(offer: Any, config: BillingConfig) -> bool:
    """True when ``offer`` can be sold in chat with this configuration."""
    if not offer.is_active or offer.price is None or offer.price <= 0:
        return False
    return offer.currency.upper() == STARS or bool(config.provider_token)


def purchasable_offers(config: BillingConfig,
                       skus: tuple[str, ...] | None = None) -> list[billing.OfferView]:
    """Active offers among ``skus`` (default ``config.offers``) that can be bought, in order."""
    return [o for o in billing.offers(config.offers if skus is None else skus)
            if is_purchasable(o, config)]


async def apurchasable_offers(config: BillingConfig,
                              skus: tuple[str, ...] | None = None) -> list[billing.OfferView]:
    """Async twin of ``purchasable_offers``."""
    return await sync_to_async(purchasable_offers)(config, skus)


def prepare_invoice(user_id: int, telegram_user_id: int, sku: str, config: BillingConfig, *,
                    kind: str = KIND_ORDER, lang: str | None = None) -> InvoiceRequest:
    """Create a pending order of ``user_id`` for one ``sku`` and describe its signed invoice.

    Only what the host configured is sold: a one-time purchase needs ``sku`` in
    ``config.offers`` (subscriptions are checked by ``prepare_subscription``). Title,
    description and price label are the offer's texts in ``lang`` (default language when not
    translated).
    """
    wanted = str(sku or "").strip().upper()
    configured = config.offers if kind == KIND_ORDER else config.subscription_offers
    offer = billing.offer(wanted)
    if offer is None or wanted not in configured or not is_purchasable(offer, config):
        raise NotPurchasable(f"Offer {sku!r} cannot be bought here")
    currency = offer.currency.upper()
    amount = to_minor_units(offer.price, currency)
    order = billing.create_order(
        user_id, offer.sku,
        metadata=config.bot_metadata(source="telegram", telegram_user_id=telegram_user_id,
                                     kind=kind),
    )
    payload = sign_payload(InvoicePayload(order_id=order.pk, amount=amount, currency=currency,
                                          buyer_id=telegram_user_id, kind=kind,
                                          bot_id=config.bot_id),
                           config.signing_secrets)
    title = (truncate_text(offer.localized_name(lang), TITLE_LIMIT)
             or truncate_text(offer.sku, TITLE_LIMIT))
    description = truncate_text(offer.localized_description(lang), DESCRIPTION_LIMIT) or title
    token = "" if currency == STARS else str(config.provider_token or "")
    return InvoiceRequest(order_id=order.pk, title=title, description=description,
                          payload=payload, currency=currency, amount=amount,
                          provider_token=token)


async def aprepare_invoice(user_id: int, telegram_user_id: int, sku: str,
                           config: BillingConfig, *, kind: str = KIND_ORDER,
                           lang: str | None = None) -> InvoiceRequest:
    """Async twin of ``prepare_invoice``."""
    return await sync_to_async(prepare_invoice)(user_id, telegram_user_id, sku, config,
                                                kind=kind, lang=lang)


async def send_invoice(bot: Bot, chat_id: int, request: InvoiceRequest) -> Any:
    """Send the invoice message for ``request`` to ``chat_id``.

    Telegram refusing the invoice (a ``400``: a price or currency it does not accept, a bad
    provider token) raises ``NotPurchasable``, which the kit's error handler tells the user
    (``error_not_purchasable``) instead of the update failing again on every retry.
    """
    try:
        return await bot.send_invoice(
            chat_id=chat_id, title=request.title, description=request.description,
            payload=request.payload, currency=request.currency, prices=request.prices(),
            provider_token=request.provider_token,
        )
    except TelegramBadRequest as refused:
        raise _refused(refused, request) from refused


async def create_invoice_link(bot: Bot, request: InvoiceRequest, *,
                              subscription_period: int | None = None) -> str:
    """An invoice link for ``request`` (a Stars subscription when a period is given); a
    refusal by Telegram raises ``NotPurchasable`` as in ``send_invoice``."""
    try:
        return await bot.create_invoice_link(
            title=request.title, description=request.description, payload=request.payload,
            currency=request.currency, prices=request.prices(),
            provider_token=request.provider_token, subscription_period=subscription_period,
        )
    except TelegramBadRequest as refused:
        raise _refused(refused, request) from refused


def _refused(refused: TelegramBadRequest, request: InvoiceRequest) -> NotPurchasable:
    logger.warning("Telegram refused the invoice of order %s: %s", request.order_id,
                   refused.message)
    return NotPurchasable("Telegram refused the invoice")


__all__ = [
    "InvoiceRequest",
    "aprepare_invoice",
    "apurchasable_offers",
    "create_invoice_link",
    "from_minor_units",
    "is_purchasable",
    "prepare_invoice",
    "purchasable_offers",
    "send_invoice",
    "to_minor_units",
    "truncate_text",
]
