"""bot_kit's part of the Prometheus metrics (see ``billable.metrics`` and docs/metrics.md).

* ``refunds`` backlog: pending rows of the refund outbox and the age of the oldest —
  ``billable_backlog_items{backlog="refunds"}`` / ``billable_backlog_oldest_age_seconds``;
* paywalls shown, pre-checkout declines and payments that could not be honoured are counted
  where they happen (``bot_kit.paywall``, ``bot_kit.payments``).
"""

from __future__ import annotations

from typing import Any

from billable.metrics import register_backlog
from bot_kit.models import RefundRequest


def pending_refunds() -> Any:
    """Refund outbox rows still to be sent to Telegram."""

    return RefundRequest.objects.filter(state=RefundRequest.State.PENDING)


def register() -> None:
    """Register bot_kit's backlogs (called from ``BotKitConfig.ready``)."""
    register_backlog("refunds", pending_refunds)


__all__ = ["pending_refunds", "register"]
