"""Structured logs: a JSON formatter, and billing ids on every record of a request or update.

The kit logs with the ids as fields (``extra=``): ``customer_id`` (the billing user's primary
key), ``order_id``, ``charge_id`` (Telegram's ``telegram_payment_charge_id`` or the payment
id), ``telegram_user_id``, ``api_key`` (the name of the key of an API request). Fields bound
with :func:`log_context` are added to every record logged inside the block — the bot binds the
customer of each update, the API the key of each request.

Enable it in ``LOGGING`` (``docs/operations.md``)::

    "filters": {"billing": {"()": "billable.logs.LogContextFilter"}},
    "formatters": {"json": {"()": "billable.logs.JsonFormatter"}},

Business events (order paid or refunded, customers merged, trial activated) are logged at INFO
on ``billable.events`` with their ids. The filter also makes ``%(customer_id)s``-style fields
safe in plain text formats (``None`` when unknown).
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from billable import signals

#: The billing ids every record carries once :class:`LogContextFilter` is installed.
ID_FIELDS = ("customer_id", "order_id", "charge_id")

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "billable_log_context", default={})  # noqa: B039 (never mutated: replaced as a whole)

#: Attributes every ``LogRecord`` has; anything else on a record is an ``extra=`` field.
_STANDARD = set(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message", "asctime", "taskName"}


def log_fields(**fields: Any) -> dict[str, Any]:
    """``extra=`` for a log call: the given fields, without the ``None`` ones."""
    return {name: value for name, value in fields.items() if value is not None}


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (``None`` values skipped) to every record logged inside the block."""
    token = _context.set({**_context.get(), **log_fields(**fields)})
    try:
        yield
    finally:
        _context.reset(token)


def current_log_context() -> dict[str, Any]:
    """The fields bound by the enclosing :func:`log_context` blocks."""
    return dict(_context.get())


class LogContextFilter(logging.Filter):
    """Copies the bound context onto each record (explicit ``extra=`` wins) and sets the
    billing id fields to ``None`` when absent. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        for name in ID_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, None)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    every ``extra=`` field and bound context field, and ``exc_info`` (the traceback text)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in {**_context.get(), **vars(record)}.items():
            if name not in _STANDARD and name not in entry and value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        try:
            return json.dumps(entry, default=str, ensure_ascii=False, allow_nan=False)
        except ValueError:  # NaN / infinity (JSON has no spelling for them) or a cycle
            return json.dumps(_strict_json(entry), default=str, ensure_ascii=False,
                              allow_nan=False)


def _strict_json(value: Any, depth: int = 0) -> Any:
    """``value`` with non-finite floats (and anything nested deeper than 20) as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if depth >= 20:
        return str(value)
    if isinstance(value, dict):
        return {str(key): _strict_json(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item, depth + 1) for item in value]
    return value


events = logging.getLogger("billable.events")


def _order_paid(sender: Any, order: Any, **kwargs: Any) -> None:
    events.info("order %s paid: %s %s", order.pk, order.total_amount, order.currency,
                extra=log_fields(event="order_confirmed", order_id=order.pk,
                                 customer_id=order.user_id, charge_id=order.payment_id,
                                 payment_method=order.payment_method))


def _order_refunded(sender: Any, order: Any, **kwargs: Any) -> None:
    events.info("order %s refunded: %s %s", order.pk, order.total_amount, order.currency,
                extra=log_fields(event="order_refunded", order_id=order.pk,
                                 customer_id=order.user_id, charge_id=order.payment_id))


def _customers_merged(sender: Any, target_user_id: Any, source_user_id: Any,
                      **kwargs: Any) -> None:
    events.info("customer %s merged into %s", source_user_id, target_user_id,
                extra=log_fields(event="customers_merged", customer_id=target_user_id,
                                 source_customer_id=source_user_id))


def _trial_activated(sender: Any, user_id: Any, products: Any = None, **kwargs: Any) -> None:
    events.info("trial activated for customer %s", user_id,
                extra=log_fields(event="trial_activated", customer_id=user_id))


def connect_event_logs() -> None:
    """Log the rare business events at INFO on ``billable.events`` (``BillableConfig.ready``)."""
    for signal, receiver in ((signals.order_confirmed, _order_paid),
                             (signals.order_refunded, _order_refunded),
                             (signals.customers_merged, _customers_merged),
                             (signals.trial_activated, _trial_activated)):
        signal.connect(receiver, dispatch_uid=f"billable.logs.{receiver.__name__}")


__all__ = [
    "ID_FIELDS",
    "JsonFormatter",
    "LogContextFilter",
    "connect_event_logs",
    "current_log_context",
    "events",
    "log_context",
    "log_fields",
]
