"""Signed invoice payloads: what an invoice is for, bound to its buyer and price.

Format (ASCII, at most 128 bytes as Telegram requires)::

    b1.<kid>.<kind>.<order_id>.<amount>.<currency>.<buyer>.<signature>
    b2.<kid>.<kind>.<order_id>.<amount>.<currency>.<buyer>.<bot>.<signature>

``kind`` is ``o`` (one-time order), ``s`` (Stars subscription), ``g`` (a gift: paying grants
nothing to the buyer) or ``d`` (an order discounted by a promo code), ``amount`` is in the
currency's smallest units, ``buyer`` is the Telegram user id. A ``d`` payload carries one more
field after the buyer, ``<redemption id>-<discount in smallest units>``, so pre-checkout can
re-check the promo code's reservation. ``b2`` adds ``bot``, the id of the bot that issued the
invoice, as the last field before the signature (written when ``BillingConfig.bot_id`` is set;
a bot refuses a payload of another bot even when the bots share their signing secrets). The
signature is a truncated HMAC-SHA256 over everything before it. Key rotation: the first of
``signing_secrets`` signs, all of them verify; ``kid`` (a short fingerprint of the secret,
never the secret) picks the verifying key directly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from bot_kit.payments.errors import InvalidPayload, PaymentsMisconfigured

VERSION = "b1"
#: The version that also binds the issuing bot's id.
VERSION_BOT = "b2"
MAX_PAYLOAD_BYTES = 128
KIND_ORDER = "o"
KIND_SUBSCRIPTION = "s"
KIND_GIFT = "g"
KIND_DISCOUNT = "d"
KINDS = (KIND_ORDER, KIND_SUBSCRIPTION, KIND_GIFT, KIND_DISCOUNT)
_SIGNATURE_BYTES = 16


@dataclass(frozen=True)
class InvoicePayload:
    """The facts an invoice payload binds together."""

    order_id: int
    amount: int
    currency: str
    buyer_id: int
    kind: str = KIND_ORDER
    promo_id: int | None = None
    discount: int = 0
    #: The bot that issued the invoice (``None``: a ``b1`` payload, bound to no bot).
    bot_id: int | None = None

    @property
    def is_subscription(self) -> bool:
        return self.kind == KIND_SUBSCRIPTION


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def key_id(secret: str) -> str:
    """A 4-character fingerprint of ``secret`` (safe to publish inside payloads)."""
    return _b64(hashlib.sha256(b"bot_kit-kid:" + secret.encode()).digest())[:4]


def _signature(secret: str, message: str) -> str:
    digest = hmac.new(secret.encode(), message.encode("ascii"), hashlib.sha256).digest()
    return _b64(digest[:_SIGNATURE_BYTES])


def _checked_secrets(secrets: Sequence[str]) -> tuple[str, ...]:
    valid = tuple(s for s in secrets if isinstance(s, str) and s)
    if not valid:
        raise PaymentsMisconfigured("BillingConfig.signing_secrets must hold at least one secret")
    return valid


def sign_payload(payload: InvoicePayload, secrets: Sequence[str]) -> str:
    """Serialize and sign ``payload`` with the first secret; raise if it exceeds 128 bytes."""
    secret = _checked_secrets(secrets)[0]
    currency = payload.currency.upper()
    if payload.kind not in KINDS or not currency.isalnum():
        raise InvalidPayload("Cannot sign this payload")
    parts = [VERSION, key_id(secret), payload.kind, str(int(payload.order_id)),
             str(int(payload.amount)), currency, str(int(payload.buyer_id))]
    if payload.kind == KIND_DISCOUNT:
        parts.append(f"{int(payload.promo_id or 0)}-{int(payload.discount)}")
    if payload.bot_id is not None:
        parts[0] = VERSION_BOT
        parts.append(str(int(payload.bot_id)))
    body = ".".join(parts)
    text = f"{body}.{_signature(secret, body)}"
    if len(text.encode("ascii")) > MAX_PAYLOAD_BYTES:
        raise InvalidPayload("Invoice payload longer than 128 bytes")
    return text


def _parse_int(value: str) -> int:
    if not value.isdigit() or len(value) > 20:
        raise InvalidPayload("Malformed invoice payload")
    return int(value)


def issuing_bot(text: str) -> int | None:
    """The bot id a ``b2`` payload names, read without checking the signature (``None`` for
    ``b1`` and anything malformed). For routing only — never for granting: payments verify."""
    parts = text.split(".") if isinstance(text, str) else []
    if len(parts) >= 9 and parts[0] == VERSION_BOT and parts[-2].isdigit() \
            and len(parts[-2]) <= 20:
        return int(parts[-2])
    return None


def verify_payload(text: object, secrets: Sequence[str]) -> InvoicePayload:
    """Parse ``text`` and check its signature against every configured secret.

    Raises ``InvalidPayload`` for anything malformed, unsigned, signed with an unknown key or
    tampered with.
    """
    valid = _checked_secrets(secrets)
    if not isinstance(text, str) or not text.isascii() or len(text) > MAX_PAYLOAD_BYTES:
        raise InvalidPayload("Malformed invoice payload")
    parts = text.split(".")
    bound = len(parts) > 0 and parts[0] == VERSION_BOT
    discounted = len(parts) > 2 and parts[2] == KIND_DISCOUNT
    size = 8 + int(bound) + int(discounted)
    if len(parts) != size or parts[0] not in (VERSION, VERSION_BOT) or parts[2] not in KINDS:
        raise InvalidPayload("Malformed invoice payload")
    body, signature = ".".join(parts[:-1]), parts[-1]
    candidates = [s for s in valid if key_id(s) == parts[1]]
    if not any(hmac.compare_digest(_signature(s, body), signature) for s in candidates):
        raise InvalidPayload("Invoice payload signature is invalid")
    promo_id, discount = None, 0
    if discounted:
        promo, _, off = parts[7].partition("-")
        promo_id, discount = _parse_int(promo), _parse_int(off)
    return InvoicePayload(order_id=_parse_int(parts[3]), amount=_parse_int(parts[4]),
                          currency=parts[5], buyer_id=_parse_int(parts[6]), kind=parts[2],
                          promo_id=promo_id, discount=discount,
                          bot_id=_parse_int(parts[-2]) if bound else None)


__all__ = [
    "KINDS",
    "KIND_DISCOUNT",
    "KIND_GIFT",
    "KIND_ORDER",
    "KIND_SUBSCRIPTION",
    "MAX_PAYLOAD_BYTES",
    "InvoicePayload",
    "issuing_bot",
    "key_id",
    "sign_payload",
    "verify_payload",
]
