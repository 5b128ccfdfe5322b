"""Views the kit serves, under any host's ``DATABASES`` settings.

A host with ``ATOMIC_REQUESTS = True`` wraps every view in ``transaction.atomic`` — and Django
refuses to do that to an async view (``RuntimeError: You cannot use ATOMIC_REQUESTS with async
views``), so the REST API and the Telegram webhook would answer 500 to every request. Neither
needs the wrap: each service call opens and commits its own transaction (a payment's grant, a
consume's DEBIT), and a view-wide transaction would only hold their locks longer and keep the
fast paths (which run outside ``atomic``) off. :func:`outside_request_transactions` marks a view
as not atomic on every database alias, as ``transaction.non_atomic_requests`` does for one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

V = TypeVar("V", bound=Callable[..., Any])


class _EveryAlias(set[str]):
    """The ``_non_atomic_requests`` of a view that no alias wraps (aliases added later too)."""

    def __contains__(self, alias: object) -> bool:
        return True


def outside_request_transactions(view: V) -> V:
    """Exempt ``view`` from ``ATOMIC_REQUESTS`` on every database alias; returns ``view``."""
    marks = getattr(view, "_non_atomic_requests", None)
    exempt = _EveryAlias(marks or ())
    view._non_atomic_requests = exempt  # type: ignore[attr-defined]
    return view


__all__ = ["outside_request_transactions"]
