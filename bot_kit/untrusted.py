"""Text that comes from Telegram (names, payloads) made storable before it reaches the database.

PostgreSQL cannot store NUL characters or lone surrogates, and billable refuses them
(``billable.validation.safe_text``). Text the kit only keeps for the record — a user's profile,
the payload of a payment that is being rejected — is cleaned instead, so an odd name or payload
never stops a user from being identified or a charge from being recorded (and refunded).
"""

from __future__ import annotations

from typing import Any


def storable(value: Any) -> Any:
    """``value`` without NUL characters and with lone surrogates replaced by ``?`` (strings
    only; anything else is returned as is)."""
    if not isinstance(value, str):
        return value
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


__all__ = ["storable"]
