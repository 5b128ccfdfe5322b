"""Receivers that keep promo reservations and gifts in step with their orders.

Both are safety nets that a sweep repeats (``PromoService.release_stale`` settles a paid
reservation whose receiver never ran), so a crash between the payment's commit and a receiver
loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import InterfaceError, OperationalError

from billable.exceptions import describe
from billable.growth.gifts import GiftService
from billable.growth.promo import PromoService
from billable.models import PromoRedemption
from billable.signals import order_confirmed, order_refunded

logger = logging.getLogger("billable.growth")


def _settle_promo(sender: Any, order: Any, **kwargs: Any) -> None:
    with _left_to_the_sweep("promo settlement", order):
        if PromoRedemption.objects.filter(order_id=order.pk,
                                          status=PromoRedemption.Status.RESERVED).exists():
            PromoService.settle_order(order.pk)


def _refund_gift(sender: Any, order: Any, **kwargs: Any) -> None:
    with _left_to_the_sweep("gift refund mark", order):
        GiftService.mark_refunded(order.pk)


@contextmanager
def _left_to_the_sweep(what: str, order: Any) -> Iterator[None]:
    """A database that is unreachable right after the payment's commit (a restart, a dropped
    connection) is one warning line, not a traceback: the sweep repeats the step
    (``release_stale`` settles a paid reservation; a gift is claimable only while its order is
    paid, whatever its mark says). Anything else is a bug and propagates (``send_robust`` logs
    it)."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        logger.warning("%s of order %s left to the sweep: %s", what, order.pk, describe(exc))


def connect() -> None:
    """Connect the receivers (idempotent: ``dispatch_uid``)."""
    order_confirmed.connect(_settle_promo, dispatch_uid="billable.growth.settle_promo")
    order_refunded.connect(_refund_gift, dispatch_uid="billable.growth.refund_gift")


__all__ = ["connect"]
