"""``b2`` payloads: the issuing bot is signed into the payload; ``b1`` stays valid."""

from __future__ import annotations

import pytest

from bot_kit.payments.errors import InvalidPayload
from bot_kit.payments.payload import (
    KIND_SUBSCRIPTION,
    MAX_PAYLOAD_BYTES,
    InvoicePayload,
    sign_payload,
    verify_payload,
)
from tests.bot_kit.multibot.common import BOT_A, BOT_B, SECRETS


def test_bot_id_round_trips_and_cannot_be_swapped() -> None:
    payload = InvoicePayload(order_id=7, amount=50, currency="XTR", buyer_id=99, bot_id=BOT_A)
    text = sign_payload(payload, SECRETS)
    assert text.startswith("b2.") and verify_payload(text, SECRETS) == payload
    forged = text.replace(f".{BOT_A}.", f".{BOT_B}.")
    with pytest.raises(InvalidPayload):
        verify_payload(forged, SECRETS)
    with pytest.raises(InvalidPayload):  # dropping the bot makes a b1 body: signature differs
        verify_payload("b1" + text[2:].replace(f".{BOT_A}", ""), SECRETS)


def test_unbound_payloads_keep_format_b1() -> None:
    payload = InvoicePayload(order_id=7, amount=50, currency="XTR", buyer_id=99)
    text = sign_payload(payload, SECRETS)
    assert text.startswith("b1.") and len(text.split(".")) == 8
    assert verify_payload(text, SECRETS).bot_id is None


def test_largest_bound_payload_fits_telegram() -> None:
    big = 10 ** 19 - 1
    payload = InvoicePayload(order_id=big, amount=big, currency="XTR", buyer_id=big,
                             kind=KIND_SUBSCRIPTION, bot_id=big)
    text = sign_payload(payload, SECRETS)
    assert len(text.encode()) <= MAX_PAYLOAD_BYTES
    assert verify_payload(text, SECRETS) == payload


def test_a_bound_gift_payload_is_still_a_gift() -> None:
    from bot_kit.handlers.gifts import is_gift_payload
    from bot_kit.payments.payload import KIND_GIFT

    for bot_id in (None, BOT_A):
        text = sign_payload(InvoicePayload(order_id=1, amount=50, currency="XTR", buyer_id=7,
                                           kind=KIND_GIFT, bot_id=bot_id), SECRETS)
        assert is_gift_payload(text)
    assert not is_gift_payload(sign_payload(InvoicePayload(
        order_id=1, amount=50, currency="XTR", buyer_id=7, bot_id=BOT_A), SECRETS))
