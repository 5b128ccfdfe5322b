"""Signing deliveries: ``Billable-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The HMAC key is the endpoint's secret (UTF-8); the message is ``f"{t}."`` followed by the raw
request body. A receiver recomputes it over the bytes it received, compares in constant time,
and rejects a ``t`` too far from its clock (replays of an old, captured request).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Billable-Signature"
EVENT_ID_HEADER = "Billable-Event-Id"
EVENT_TYPE_HEADER = "Billable-Event-Type"
#: Default tolerance of :func:`verify` between ``t`` and the receiver's clock, in seconds.
TOLERANCE = 300


def compute(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body`` under ``secret``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Billable-Signature`` header value for ``body`` (now, unless ``timestamp``)."""
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={stamp},v1={compute(secret, stamp, body)}"


def verify(secret: str, body: bytes, header: str, *, tolerance: int = TOLERANCE,
           now: float | None = None) -> bool:
    """Whether ``header`` is a valid signature of ``body`` made within ``tolerance`` seconds."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        stamp = int(parts.get("t", ""))
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        return False
    return hmac.compare_digest(parts.get("v1", ""), compute(secret, stamp, body))


__all__ = ["EVENT_ID_HEADER", "EVENT_TYPE_HEADER", "SIGNATURE_HEADER", "TOLERANCE", "compute",
           "sign", "verify"]
