"""The kit side of the growth features (promo codes, gifts, alerts): invoices and outcomes.

The bot's promo, gift and notification handlers, the pre-checkout re-check and the payment
confirmation use these functions (sync; the handlers wrap them with ``sync_to_async``); every
billable call they make goes through the billing port (:mod:`bot_kit.billing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot_kit import billing
from bot_kit.payments.errors import NotPurchasable
from bot_kit.payments.invoices import (
    DESCRIPTION_LIMIT,
    STARS,
    TITLE_LIMIT,
    InvoiceRequest,
    to_minor_units,
    truncate_text,
)
from bot_kit.payments.payload import KIND_DISCOUNT, KIND_GIFT, InvoicePayload, sign_payload
from bot_kit.payments.precheckout import discount_problem

if TYPE_CHECKING:
    from bot_kit.config import BillingConfig

GIFT_METHOD = "telegram_stars"


@dataclass(frozen=True)
class PromoOutcome:
    """What redeeming a code in chat produced: products granted, or an invoice to send."""

    code: str
    granted: dict[str, int]
    invoice: InvoiceRequest | None = None
    percent_off: int | None = None


@dataclass(frozen=True)
class GiftClaim:
    """A successful claim: what the claimer got, and whom to tell."""

    granted: dict[str, int]
    offer_name: str
    buyer_telegram_id: int | None
    buyer_language: str | None = None


def _granted(batches: list[Any]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for batch in batches:
        totals[batch.product.name] = totals.get(batch.product.name, 0) + batch.initial_quantity
    return totals


def _invoice(order: Any, offer: Any, telegram_user_id: int, config: BillingConfig, *,
             kind: str, promo_id: int | None = None, discount: int = 0,
             description: str | None = None) -> InvoiceRequest:
    currency = order.currency.upper()
    amount = to_minor_units(order.total_amount, currency)
    payload = sign_payload(InvoicePayload(order_id=order.pk, amount=amount, currency=currency,
                                          buyer_id=telegram_user_id, kind=kind,
                                          promo_id=promo_id, discount=discount,
                                          bot_id=config.bot_id),
                           config.signing_secrets)
    title = truncate_text(offer.name, TITLE_LIMIT) or truncate_text(offer.sku, TITLE_LIMIT)
    text = description or offer.description or offer.name
    return InvoiceRequest(order_id=order.pk, title=title,
                          description=truncate_text(text, DESCRIPTION_LIMIT) or title,
                          payload=payload, currency=currency, amount=amount,
                          provider_token="" if currency == STARS else str(
                              config.provider_token or ""))


def redeem_promo(user_id: int, telegram_user_id: int, code: str, config: BillingConfig, *,
                 sku: str | None = None, description: str | None = None) -> PromoOutcome:
    """Redeem ``code`` once per Telegram identity: grant, or prepare the discounted invoice.

    Raises the billable promo errors (``promo_*`` codes) and ``NotPurchasable``.
    """
    result = billing.redeem_promo(code, user_id=user_id, telegram_user_id=telegram_user_id,
                                  sku=sku, metadata=config.bot_metadata())
    red = result.redemption
    if result.order is None:
        return PromoOutcome(code=red.promo.code, granted=_granted(result.batches))
    offer = red.offer
    currency = offer.currency.upper()
    if currency != STARS and not config.provider_token:
        raise NotPurchasable(f"Offer {offer.sku!r} cannot be bought here")
    discount = to_minor_units(red.list_price, currency) - to_minor_units(red.price, currency)
    if description:
        description = description.replace("{name}", offer.name).replace("{code}",
                                                                         red.promo.code)
    invoice = _invoice(result.order, offer, telegram_user_id, config, kind=KIND_DISCOUNT,
                       promo_id=red.pk, discount=discount, description=description)
    return PromoOutcome(code=red.promo.code, granted={}, invoice=invoice,
                        percent_off=red.promo.percent_off)


def promo_needs_offer(code: str) -> bool:
    """True for a discount code that is not bound to one offer (the customer picks one)."""
    promo = billing.promo_code(code)
    return promo.is_discount and promo.offer_id is None


def check_discount(payload: InvoicePayload) -> str | None:
    """Pre-checkout re-check of a discounted invoice (see ``precheckout.discount_problem``)."""
    return discount_problem(payload)


def create_gift_invoice(user_id: int, telegram_user_id: int, sku: str,
                        config: BillingConfig) -> InvoiceRequest:
    """A pending gift of ``sku`` (Stars only) and its signed invoice."""
    offer = billing.gift_offer(sku)
    allowed = config.gift_offers or config.offers
    if (offer is None or offer.sku not in allowed or offer.currency.upper() != STARS
            or offer.price <= 0):
        raise NotPurchasable(f"Offer {sku!r} cannot be gifted here")
    gift = billing.create_gift(user_id, offer.sku, telegram_user_id=telegram_user_id,
                               metadata=config.bot_metadata())
    return _invoice(gift.order, offer, telegram_user_id, config, kind=KIND_GIFT)


def pay_gift_order(order_id: int, charge_id: str) -> Any:
    """Pay a gift's order without granting (the claim grants); exactly once per charge."""
    return billing.pay_gift_order(order_id, charge_id=charge_id, method=GIFT_METHOD)


def gift_token_for_order(order_id: int | None) -> str | None:
    """The deep-link token of the gift paid by ``order_id``."""
    return billing.gift_token_for_order(order_id)


def claim_gift(token: str, user_id: int, telegram_user_id: int, *,
               provider: str = "telegram", config: BillingConfig | None = None) -> GiftClaim:
    """Claim the gift for ``user_id``; raises the ``gift_*`` errors. With ``config`` the
    granted batches carry its bot's ``bot_id``."""
    batches, gift, identity = billing.claim_gift(
        token, user_id=user_id, telegram_user_id=telegram_user_id, provider=provider,
        metadata=config.bot_metadata() if config is not None else None)
    buyer = identity.external_id if identity is not None else ""
    return GiftClaim(granted=_granted(batches), offer_name=gift.offer.name,
                     buyer_telegram_id=int(buyer) if buyer.isdigit() else None,
                     buyer_language=language_of(identity))


def language_of(identity: Any) -> str | None:
    """The ``language_code`` kept in an identity's profile metadata."""
    metadata = getattr(identity, "metadata", None)
    value = metadata.get("language_code") if isinstance(metadata, dict) else None
    return str(value) if value else None


def alerts_enabled(user_id: int) -> bool:
    return billing.alerts_enabled(user_id)


def set_alerts_enabled(user_id: int, enabled: bool) -> bool:
    return billing.set_alerts_enabled(user_id, enabled)


__all__ = ["GIFT_METHOD", "GiftClaim", "PromoOutcome", "alerts_enabled", "check_discount",
           "claim_gift", "create_gift_invoice", "gift_token_for_order", "pay_gift_order",
           "promo_needs_offer", "redeem_promo", "set_alerts_enabled"]
