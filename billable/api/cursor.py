"""Opaque cursors for keyset paging of the ledger (``GET /wallet/transactions``).

A cursor is the URL-safe base64 (unpadded) of ``{"t": <created_at ISO-8601>, "id": <uuid>}`` of
the last row of a page. The next page holds the rows strictly older in ``(created_at, id)``
order, so paging is stable while new rows are written.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from django.db.models import Q

from billable.exceptions import InvalidInput

INVALID_CURSOR = "Invalid cursor"
MAX_CURSOR_LENGTH = 200


def encode_cursor(created_at: datetime, row_id: Any) -> str:
    """The cursor that continues after the row ``(created_at, row_id)``."""
    raw = json.dumps({"t": created_at.isoformat(), "id": str(row_id)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """``(created_at, id)`` from a cursor; raises ``InvalidInput`` ("Invalid cursor")."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise InvalidInput(INVALID_CURSOR, field="cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        moment = datetime.fromisoformat(data["t"])
        row_id = uuid.UUID(str(data["id"]))
        if moment.tzinfo is None:
            raise ValueError("naive time")
        moment = moment.astimezone(UTC)  # a time outside years 1-9999 in UTC overflows here
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError, OverflowError):
        raise InvalidInput(INVALID_CURSOR, field="cursor") from None
    return moment, row_id


def older_than(cursor: str) -> Q:
    """Filter for rows after ``cursor`` in newest-first ``(created_at, id)`` order."""
    moment, row_id = decode_cursor(cursor)
    return Q(created_at__lt=moment) | Q(created_at=moment, id__lt=row_id)


__all__ = ["decode_cursor", "encode_cursor", "older_than"]
