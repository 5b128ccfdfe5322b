"""``billable_gift_refunds``: expire unclaimed gifts and queue their refunds.

Ready gifts past their expiry (``BILLABLE_GIFT_TTL`` after payment) become ``expired``; each
expired gift paid in Telegram gets a refund request in the durable refund outbox (idempotent),
which ``billable_refunds`` sends. Refunding the order marks the gift ``refunded``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from bot_kit import billing
from bot_kit.models import RefundRequest, TelegramPayment
from bot_kit.payments.refunds import request_refund
from bot_kit.resilience import outage_is_command_error


def queue_gift_refunds() -> tuple[int, int]:
    """Expire due gifts and queue a refund for every expired one; ``(expired, queued)``."""
    expired, orders = billing.expire_gifts()
    queued = 0
    payments = TelegramPayment.objects.filter(order_id__in=orders,
                                              status=TelegramPayment.Status.CONFIRMED)
    for payment in payments.exclude(pk__in=RefundRequest.objects.values("payment_id")):
        request_refund(payment.charge_id, reason="gift not claimed in time",
                       requested_by="gift_expiry")
        queued += 1
    return expired, queued


class Command(BaseCommand):
    help = "Expire unclaimed gifts and queue their refunds in the refund outbox."

    @outage_is_command_error
    def handle(self, *args: Any, **options: Any) -> None:
        expired, queued = queue_gift_refunds()
        self.stdout.write(f"Expired gifts: {expired}. Refunds queued: {queued}.")
