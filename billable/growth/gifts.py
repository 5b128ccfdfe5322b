"""Gifts: one customer pays for an offer, another claims it once through a secret token.

* :meth:`GiftService.create_gift` — a pending order of one offer for the buyer and a gift
  with a random token (the deep link ``start=gift-<token>``).
* :meth:`GiftService.pay_gift_order` — ``pending → paid`` exactly once through the engine's
  ``ledger.payments.mark_paid``, the step ``OrderService.pay_order`` takes too (one payment id
  pays one order), **without granting anything to the buyer**; the gift becomes ``ready`` and
  expires ``BILLABLE_GIFT_TTL`` seconds later.
* :meth:`GiftService.claim` — first claim wins: the gift row is locked, the buyer cannot claim
  their own gift, the order line's snapshot is granted to the claimer (``source="gift"``, the
  batches point at the buyer's order line, so refunding the order revokes them). Sends
  ``gift_claimed`` after commit.
* :meth:`GiftService.expire_gifts` — ready gifts past their expiry become ``expired``; the bot
  kit queues their refunds through the refund outbox. A refunded gift order marks its gift
  ``refunded`` (receiver of ``order_refunded``).

Lock order: the order, then its gift — for payment, claim and the customer merge (which locks
the buyer's orders and later moves the buyer's gifts) alike. A claim used to lock the gift
first and deadlocked with a merge of the buyer (PostgreSQL aborted one of them; the retry
hid it, at the price of a deadlock each time).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from billable.conf import billable_settings
from billable.exceptions import (
    GiftAlreadyClaimed,
    GiftExpired,
    GiftOwn,
    GiftUnknown,
    InvalidInput,
    OrderStateError,
)
from billable.ledger import payments
from billable.ledger.retry import retrying
from billable.models import Gift, Order, QuotaBatch
from billable.services import OrderService, TransactionService
from billable.services.order_input import payment_fields
from billable.signals import gift_claimed, order_confirmed, send_on_commit
from billable.validation import coerce_pk, metadata_dict

GIFT_SOURCE = "gift"
TOKEN_BYTES = 12


def _token(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > 32:
        raise GiftUnknown("Unknown gift")
    text = value.strip()
    if not all(ch.isalnum() or ch in "-_" for ch in text):
        raise GiftUnknown("Unknown gift")
    return text


class GiftService:
    """Create, pay, claim and expire gifts (sync + async twins)."""

    @classmethod
    def create_gift(cls, buyer_id: Any, sku: Any, *,
                    metadata: dict[str, Any] | None = None) -> Gift:
        """A pending gift of ``sku`` for ``buyer_id`` with its pending order (catalog price).

        A gift is a purchase: a free offer (price 0) is refused with ``InvalidInput`` and
        nothing is written (free offers are given as trials or grant promo codes, which
        count their uses).
        """
        meta = metadata_dict(metadata)
        with transaction.atomic():
            order = OrderService.create_order(buyer_id, [{"sku": sku, "quantity": 1}],
                                              metadata={**meta, "gift": True})
            line = order.items.select_related("offer").get()
            if line.price <= 0:  # the order's own resolution of the sku; rolled back
                raise InvalidInput("A free offer (price 0) cannot be given as a gift",
                                   field="sku")
            return Gift.objects.create(token=secrets.token_urlsafe(TOKEN_BYTES),
                                       buyer_id=order.user_id, offer=line.offer, order=order,
                                       metadata=meta)

    @classmethod
    async def acreate_gift(cls, buyer_id: Any, sku: Any, *,
                           metadata: dict[str, Any] | None = None) -> Gift:
        """Async twin of :meth:`create_gift`."""
        return await sync_to_async(cls.create_gift)(buyer_id, sku, metadata=metadata)

    @classmethod
    def is_gift_order(cls, order_id: Any) -> bool:
        """True when ``order_id`` pays for a gift."""
        pk = coerce_pk(getattr(order_id, "pk", order_id))
        return pk is not None and Gift.objects.filter(order_id=pk).exists()

    @classmethod
    @retrying
    def pay_gift_order(cls, order_id: Any, *, payment_id: Any = None,
                       payment_method: str | None = None) -> Order:
        """Mark the gift's order paid (granting nothing yet) and the gift ready, exactly once.

        A replay with the same payment id returns the order unchanged; errors as
        ``OrderService.pay_order``.
        """
        payment_id, method = payment_fields(payment_id, payment_method)
        locked: list[Gift] = []

        def lock_gift(order: Order) -> None:  # lock order: the order first, then its gift
            gift = Gift.objects.select_for_update().filter(order=order).first()
            if gift is None:
                raise OrderStateError(f"Order #{order.pk} is not a gift")
            locked.append(gift)

        with transaction.atomic():
            paid = payments.mark_paid(order_id=order_id, payment_id=payment_id, method=method,
                                      requested_method=payment_method, grant=False,
                                      before=lock_gift)
            if paid.fresh:
                gift, order = locked[0], paid.order
                gift.status = Gift.Status.READY
                gift.expires_at = (order.paid_at or timezone.now()) + timedelta(
                    seconds=float(billable_settings.BILLABLE_GIFT_TTL))
                gift.save(update_fields=["status", "expires_at"])
                send_on_commit(order_confirmed, sender=cls, order=order)
        return paid.order

    @classmethod
    async def apay_gift_order(cls, order_id: Any, *, payment_id: Any = None,
                              payment_method: str | None = None) -> Order:
        """Async twin of :meth:`pay_gift_order`."""
        return await sync_to_async(cls.pay_gift_order)(order_id, payment_id=payment_id,
                                                       payment_method=payment_method)

    @classmethod
    def get_gift(cls, token: Any) -> Gift:
        """The gift of ``token`` with its offer; ``GiftUnknown`` when none."""
        gift = Gift.objects.select_related("offer").filter(token=_token(token)).first()
        if gift is None:
            raise GiftUnknown("Unknown gift")
        return gift

    @classmethod
    async def aget_gift(cls, token: Any) -> Gift:
        """Async twin of :meth:`get_gift`."""
        return await sync_to_async(cls.get_gift)(token)

    @classmethod
    @retrying
    def claim(cls, token: Any, *, user_id: Any,
              metadata: dict[str, Any] | None = None) -> list[QuotaBatch]:
        """Grant the gift to ``user_id`` if nobody claimed it first; return the batches.

        Raises ``GiftUnknown``, ``GiftOwn`` (the buyer), ``GiftAlreadyClaimed`` (someone
        was first, also the claimer themselves on a repeat), ``GiftExpired`` (expired,
        refunded, unpaid); nothing is written when any of them is raised.
        """
        text, pk = _token(token), coerce_pk(getattr(user_id, "pk", user_id))
        if pk is None:
            raise InvalidInput("user_id is required")
        meta = metadata_dict(metadata)
        with transaction.atomic():
            # The global lock order (billable.ledger.locks): the order, then its gift — as the
            # payment and the customer merge (which moves the buyer's gifts) take them. Locking
            # the gift first deadlocked with a merge of the buyer.
            order_id = Gift.objects.filter(token=text).values_list("order_id", flat=True).first()
            order = (Order.objects.select_for_update().filter(pk=order_id).first()
                     if order_id is not None else None)
            gift = Gift.objects.select_for_update().filter(token=text).first()
            if gift is None or order is None:
                raise GiftUnknown("Unknown gift")
            _check_claimable(gift, pk, timezone.now())
            if order.status != Order.Status.PAID:
                raise GiftExpired("This gift is no longer available")
            line = order.items.select_related("offer").get()
            batches = TransactionService.grant_offer(
                pk, line.offer, order_item=line, source=GIFT_SOURCE,
                metadata={**meta, "gift_id": gift.pk, "buyer_id": gift.buyer_id})
            gift.status, gift.claimed_by_id, gift.claimed_at = (
                Gift.Status.CLAIMED, pk, timezone.now())
            gift.save(update_fields=["status", "claimed_by", "claimed_at"])
            send_on_commit(gift_claimed, sender=cls, gift=gift, buyer_id=gift.buyer_id,
                           claimer_id=pk)
        return batches

    @classmethod
    async def aclaim(cls, token: Any, *, user_id: Any,
                     metadata: dict[str, Any] | None = None) -> list[QuotaBatch]:
        """Async twin of :meth:`claim`."""
        return await sync_to_async(cls.claim)(token, user_id=user_id, metadata=metadata)

    @classmethod
    def status_of(cls, gift: Gift, *, now: datetime | None = None) -> str:
        """The gift's status as a claim sees it: a ``ready`` gift past its expiry is
        ``expired`` whether or not the sweep has marked it yet."""
        now = now or timezone.now()
        if gift.status == Gift.Status.READY and gift.expires_at is not None and (
                now >= gift.expires_at):
            return str(Gift.Status.EXPIRED)
        return str(gift.status)

    @classmethod
    def expire_gifts(cls, *, now: datetime | None = None) -> list[Gift]:
        """Ready gifts past their expiry become ``expired``; returns them (to refund)."""
        now = now or timezone.now()
        expired = []
        due = Gift.objects.filter(status=Gift.Status.READY, expires_at__lte=now)
        for pk in due.order_by("pk").values_list("pk", flat=True):
            with transaction.atomic():
                gift = Gift.objects.select_for_update().get(pk=pk)
                if gift.status == Gift.Status.READY:
                    gift.status = Gift.Status.EXPIRED
                    gift.save(update_fields=["status"])
                    expired.append(gift)
        return expired

    @classmethod
    def expired_order_ids(cls) -> list[int]:
        """The order ids of every expired gift (their refunds are queued by the bot kit)."""
        orders = Gift.objects.filter(status=Gift.Status.EXPIRED).values_list("order_id",
                                                                            flat=True)
        return [pk for pk in orders if pk is not None]

    @classmethod
    def token_for_order(cls, order_id: int | None) -> str | None:
        """The deep-link token of the gift paid by ``order_id`` (``None`` if none)."""
        if order_id is None:
            return None
        token = Gift.objects.filter(order_id=order_id).values_list("token", flat=True).first()
        return None if token is None else str(token)

    @classmethod
    def expiry_of(cls, token: str | None) -> datetime | None:
        """When the gift ``token`` stops being claimable (``None``: unknown or not paid yet)."""
        return Gift.objects.filter(token=token).values_list("expires_at", flat=True).first()

    @classmethod
    def mark_refunded(cls, order_id: Any) -> None:
        """A gift whose order was refunded can no longer be claimed; a claimed one is marked
        ``refunded`` too (its claimer's units were revoked), keeping ``claimed_by``."""
        pk = coerce_pk(getattr(order_id, "pk", order_id))
        if pk is not None:
            Gift.objects.filter(order_id=pk).update(status=Gift.Status.REFUNDED)


def _check_claimable(gift: Gift, user_pk: int, now: datetime) -> None:
    if gift.buyer_id == user_pk:
        raise GiftOwn("You cannot claim your own gift")
    if gift.status == Gift.Status.CLAIMED:
        raise GiftAlreadyClaimed("This gift has already been claimed")
    if gift.status != Gift.Status.READY or (gift.expires_at is not None
                                             and now >= gift.expires_at):
        raise GiftExpired("This gift is no longer available")


__all__ = ["GIFT_SOURCE", "GiftService"]
