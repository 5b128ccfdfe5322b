"""Signed invoice payloads: what an invoice is for, bound to its buyer and price.

Format (ASCII, at most 128 bytes as Telegram requires)::

    b1.<kid>.<kind>.<order_id>.<amount>.<currency>.<buyer>.<signature>
    b2.<kid>.<kind>.<order_id>.<amount>.<currency>.<buyer>.<bot>.<signature>

``kind`` is ``o`` (one-time order) or ``s`` (Stars subscription), ``amount`` is in the currency's
smallest units, ``buyer`` is the Telegram user id, ``bot`` the id of the bot that issued the
invoice (``b2``, written when ``BillingConfig.bot_id`` is set; a bot refuses a payload of
another bot even when the bots share their signing secrets). The signature is a truncated
HMAC-SHA256 over everything before it. Key rotation: the first of ``signing_secrets`` signs,
all of them verify; ``kid`` (a short fingerprint of the secret, never the secret) picks the
verifying key directly.
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
_SIGNATURE_BYTES = 16


@dataclass(frozen=True)
class InvoicePayload:
    """The facts an invoice payload binds together."""

    order_id: int
    amount: int
    currency: str
    buyer_id: int
    kind: str = KIND_ORDER
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
    if payload.kind not in (KIND_ORDER, KIND_SUBSCRIPTION) or not currency.isalnum():
        raise InvalidPayload("Cannot sign this payload")
    fields = [VERSION, key_id(secret), payload.kind, str(int(payload.order_id)),
              str(int(payload.amount)), currency, str(int(payload.buyer_id))]
    if payload.bot_id is not None:
        fields[0] = VERSION_BOT
        fields.append(str(int(payload.bot_id)))
    body = ".".join(fields)
    text = f"{body}.{_signature(secret, body)}"
    if len(text.encode("ascii")) > MAX_PAYLOAD_BYTES:
        raise InvalidPayload("Invoice payload longer than 128 bytes")
    return text


def _parse_int(value: str) -> int:
    if not value.isdigit() or len(value) > 20:
        raise InvalidPayload("Malformed invoice payload")
    return int(value)


def verify_payload(text: object, secrets: Sequence[str]) -> InvoicePayload:
    """Parse ``text`` and check its signature against every configured secret.

    Raises ``InvalidPayload`` for anything malformed, unsigned, signed with an unknown key or
    tampered with.
    """
    valid = _checked_secrets(secrets)
    if not isinstance(text, str) or not text.isascii() or len(text) > MAX_PAYLOAD_BYTES:
        raise InvalidPayload("Malformed invoice payload")
    parts = text.split(".")
    size = {VERSION: 8, VERSION_BOT: 9}.get(parts[0])
    if len(parts) != size or parts[2] not in (KIND_ORDER, KIND_SUBSCRIPTION):
        raise InvalidPayload("Malformed invoice payload")
    body, signature = ".".join(parts[:-1]), parts[-1]
    candidates = [s for s in valid if key_id(s) == parts[1]]
    if not any(hmac.compare_digest(_signature(s, body), signature) for s in candidates):
        raise InvalidPayload("Invoice payload signature is invalid")
    return InvoicePayload(order_id=_parse_int(parts[3]), amount=_parse_int(parts[4]),
                          currency=parts[5], buyer_id=_parse_int(parts[6]), kind=parts[2],
                          bot_id=_parse_int(parts[7]) if size == 9 else None)


__all__ = [
    "KIND_ORDER",
    "KIND_SUBSCRIPTION",
    "MAX_PAYLOAD_BYTES",
    "InvoicePayload",
    "key_id",
    "sign_payload",
    "verify_payload",
]
