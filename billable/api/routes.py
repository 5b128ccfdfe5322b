"""Which route an operation serves: the ``(METHOD, path)`` key of the scope table and metrics.

Django Ninja applies a router's view decorators (``router.add_decorator(..., mode="view")``) to
each operation's bound ``run`` method; :func:`route_of` finds the operation behind it, so a
decorator knows its route once, when the API is built, not on every request.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ninja.operation import Operation


def operation_of(run: Callable[..., Any]) -> Operation:
    """The Ninja operation whose (possibly already decorated) ``run`` this is."""
    target = inspect.unwrap(run)
    operation = getattr(target, "__self__", None)
    if not isinstance(operation, Operation):
        raise TypeError(f"{run!r} is not the run method of a Django Ninja operation")
    return operation


def route_of(run: Callable[..., Any]) -> tuple[str, str]:
    """``(METHOD, path)`` of the operation; the path is relative to its router and keeps its
    parameters (``/orders/{order_id}``)."""
    operation = operation_of(run)
    return operation.methods[0].upper(), operation.path


__all__ = ["operation_of", "route_of"]
