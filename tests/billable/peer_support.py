"""Helpers of the peer (black-box acceptance) suite: one test body for a sync method and its twin.

The peer suite (``test_peer_*.py``) is written from the contract (SPEC §1–5, §9 and the
published 0.2 README) only, as another team would: it calls public imports and asserts public
results, never internals.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync

MODES = ("sync", "async")


def call(mode: str, facade: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """``facade.name(...)`` or, in async mode, ``facade.aname(...)`` driven to completion."""
    if mode == "sync":
        return getattr(facade, name)(*args, **kwargs)
    return async_to_sync(getattr(facade, "a" + name))(*args, **kwargs)


def days(n: float) -> timedelta:
    return timedelta(days=n)
