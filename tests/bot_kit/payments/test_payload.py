"""Signed invoice payloads: size, binding, tampering and key rotation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot_kit.payments.errors import InvalidPayload, PaymentsMisconfigured
from bot_kit.payments.payload import (
    KIND_SUBSCRIPTION,
    MAX_PAYLOAD_BYTES,
    InvoicePayload,
    key_id,
    sign_payload,
    verify_payload,
)

SECRETS = ("current-secret", "previous-secret")


@given(order_id=st.integers(1, 10**18), amount=st.integers(1, 10**12),
       buyer=st.integers(1, 10**16), currency=st.sampled_from(["XTR", "USD", "EUR"]))
def test_payload_round_trips_and_fits_telegram_limit(order_id: int, amount: int, buyer: int,
                                                     currency: str) -> None:
    payload = InvoicePayload(order_id=order_id, amount=amount, currency=currency, buyer_id=buyer)
    text = sign_payload(payload, SECRETS)
    assert len(text.encode()) <= MAX_PAYLOAD_BYTES
    assert verify_payload(text, SECRETS) == payload


def test_payload_names_the_signing_key_but_not_the_secret() -> None:
    text = sign_payload(InvoicePayload(1, 50, "XTR", 7), SECRETS)
    assert f".{key_id(SECRETS[0])}." in text
    assert SECRETS[0] not in text


@pytest.mark.parametrize("field, value", [(3, "2"), (4, "49"), (5, "USD"), (6, "8"), (2, "s")])
def test_tampered_payload_is_rejected(field: int, value: str) -> None:
    parts = sign_payload(InvoicePayload(1, 50, "XTR", 7), SECRETS).split(".")
    parts[field] = value
    with pytest.raises(InvalidPayload):
        verify_payload(".".join(parts), SECRETS)


@pytest.mark.parametrize("text", ["", "garbage", "b1.x.o.1.2.XTR.3", None, 42, "ä" * 10,
                                  "b1.abcd.o.-1.50.XTR.7.sig", "x" * 200])
def test_malformed_payload_is_rejected(text: object) -> None:
    with pytest.raises(InvalidPayload):
        verify_payload(text, SECRETS)


def test_rotation_old_key_still_verifies_and_removed_key_does_not() -> None:
    old = sign_payload(InvoicePayload(5, 100, "XTR", 9, kind=KIND_SUBSCRIPTION),
                       ("previous-secret",))
    assert verify_payload(old, SECRETS).is_subscription
    with pytest.raises(InvalidPayload):
        verify_payload(old, ("current-secret",))


def test_signing_needs_a_secret() -> None:
    with pytest.raises(PaymentsMisconfigured):
        sign_payload(InvoicePayload(1, 1, "XTR", 1), ())
    with pytest.raises(PaymentsMisconfigured):
        verify_payload("b1", ("",))
