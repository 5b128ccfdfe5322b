"""Text the database can store: the check every layer uses, the models included.

It sits below the models (it imports nothing of billable but the exceptions), so a model can
check a value without importing ``billable.validation``, which imports the models.
"""

from __future__ import annotations

from billable.exceptions import InvalidInput

__all__ = ["safe_text"]


def safe_text(value: str, *, field: str = "value") -> str:
    """Return ``value`` if PostgreSQL can store it: no NUL character, no lone surrogate.

    Raises :class:`InvalidInput` otherwise (the database would refuse it with a raw error).
    """
    if "\x00" in value:
        raise InvalidInput(f"{field} must not contain NUL characters", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} must be valid Unicode text", field=field) from None
    return value
