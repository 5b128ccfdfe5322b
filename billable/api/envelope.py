"""The JSON error envelope of the REST API (shared by the auth and the error translation)."""

from __future__ import annotations

from typing import Any


def error_body(message: str, code: str, **data: Any) -> dict[str, Any]:
    """The error envelope: ``{"success": False, "message", "data": {"error": code, ...}}``."""
    return {"success": False, "message": message, "data": {"error": code, **data}}


__all__ = ["error_body"]
