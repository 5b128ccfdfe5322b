"""Receivers that keep promo reservations and gifts in step with their orders.

Both are safety nets that a sweep repeats (``PromoService.release_stale`` settles a paid
reservation whose receiver never ran), so a crash between the payment's commit and a receiver
loses nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from billable.growth.gifts import GiftService
from billable.growth.promo import PromoService
from billable.models import PromoRedemption
from billable.signals import order_confirmed, order_refunded

logger = logging.getLogger("billable.growth")


def _settle_promo(sender: Any, order: Any, **kwargs: Any) -> None:
    if PromoRedemption.objects.filter(order_id=order.pk,
                                      status=PromoRedemption.Status.RESERVED).exists():
        PromoService.settle_order(order.pk)


def _refund_gift(sender: Any, order: Any, **kwargs: Any) -> None:
    GiftService.mark_refunded(order.pk)


def connect() -> None:
    """Connect the receivers (idempotent: ``dispatch_uid``)."""
    order_confirmed.connect(_settle_promo, dispatch_uid="billable.growth.settle_promo")
    order_refunded.connect(_refund_gift, dispatch_uid="billable.growth.refund_gift")


__all__ = ["connect"]
