"""Paying an order: the one ``pending → paid`` step, shared by purchases and gifts.

:func:`mark_paid` locks the order row, treats a replay of the same payment as a no-op, refuses
another payment of a paid order and a payment id already used by another order (the partial
UNIQUE ``(payment_method, payment_id)``), marks the order paid and, unless told not to, grants
every line (a gift's order is paid without granting: the claim grants). Run it inside
``transaction.atomic``; the caller sends ``order_confirmed`` when ``fresh`` is True.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from billable.exceptions import EmptyOffer, OrderNotFound, OrderStateError, PaymentConflict
from billable.ledger import grants as granting
from billable.ledger.locks import lock_users
from billable.models import CustomerMerge, Gift, Order
from billable.validation import coerce_pk

logger = logging.getLogger("billable.orders")


@dataclass(frozen=True)
class PaidOrder:
    """The order after :func:`mark_paid`; ``fresh`` is False for a replayed payment."""

    order: Order
    fresh: bool


def locked_order(*, order_id: Any) -> Order:
    """The order row (an instance or a key), locked ``FOR UPDATE``; else ``OrderNotFound``."""
    pk = coerce_pk(getattr(order_id, "pk", order_id))
    order = Order.objects.select_for_update().filter(pk=pk).first() if pk else None
    if order is None:
        raise OrderNotFound("Order not found")
    return order


def mark_paid(*, order_id: Any, payment_id: str | None, method: str,
              requested_method: str | None, grant: bool = True,
              before: Callable[[Order], None] | None = None) -> PaidOrder:
    """``pending → paid`` exactly once per payment; run in ``atomic``.

    ``method`` is the validated payment method; ``requested_method`` the caller's own value
    (``None`` or blank: a replay matches whatever method paid the order). ``before(order)``
    runs on the locked pending order just before it is marked paid and may raise to refuse.
    Raises ``OrderNotFound``, ``OrderStateError`` (not pending; or a gift's order when
    ``grant``: gifts are paid without granting), ``PaymentConflict``, and
    ``EmptyOffer`` when ``grant`` and a line grants nothing (nothing is written then).
    """
    order = locked_order(order_id=order_id)
    if order.status == Order.Status.PAID:
        _check_replay(order, payment_id, requested_method)
        return PaidOrder(order, fresh=False)
    if order.status != Order.Status.PENDING:
        raise OrderStateError(f"Order #{order.pk} is {order.status} and cannot be paid")
    if before is not None:
        before(order)
    if grant and Gift.objects.filter(order_id=order.pk).exists():
        # A gift's order is paid without granting (the claimer is granted): granting it to the
        # buyer would leave the gift pending for ever, neither claimable nor refunded.
        raise OrderStateError(f"Order #{order.pk} pays for a gift: pay it with "
                              "GiftService.pay_gift_order")
    fields = ["status", "payment_id", "payment_method", "paid_at"]
    if grant and _follow_merges(order):
        fields.append("user")
    order.status, order.payment_id = Order.Status.PAID, payment_id
    order.payment_method, order.paid_at = method, timezone.now()
    try:
        with transaction.atomic():
            order.save(update_fields=fields)
    except IntegrityError:
        raise PaymentConflict(
            f"Payment {payment_id!r} ({method}) was already used for another order") from None
    if grant:
        _grant_lines(order)
    return PaidOrder(order, fresh=True)


def _follow_merges(order: Order) -> bool:
    """Move ``order`` to the account its owner was merged into, if it was; True when moved.

    A customer merge moves the source's orders, but not one created after it for the emptied
    account (a stale id in another process) or while it ran (its transaction did not see the
    new row). Granted as it stands, such an order would credit the emptied account: a payment
    the customer never sees. Locking the owner's account first (the global lock order: orders,
    then accounts) waits for a merge of it that is still running; the merge records read after
    that lock include it. A chain of merges is followed to its end.
    """
    owner = order.user_id
    lock_users([owner])
    seen = {owner}
    while True:
        into = (CustomerMerge.objects.filter(source_user_id=owner)
                .order_by("-created_at", "-id").values_list("target_user_id", flat=True).first())
        if into is None or into in seen:
            break
        seen.add(into)
        owner = into
    if owner == order.user_id:
        return False
    lock_users([owner])
    logger.info("order %s of merged account %s paid to account %s", order.pk, order.user_id,
                owner)
    order.user_id = owner
    return True


def _check_replay(order: Order, payment_id: str | None, requested_method: str | None) -> None:
    """A confirmation of an already paid order: the same payment is a no-op, another conflicts."""
    same_method = requested_method is None or not requested_method.strip() or (
        requested_method.strip() == order.payment_method)
    if payment_id != order.payment_id or not same_method:
        raise PaymentConflict(f"Order #{order.pk} is already paid by another payment")


def _grant_lines(order: Order) -> None:
    """Grant every order line — its snapshot, taken when the order was created — in a constant
    number of statements (``grant_lines``). A line that grants nothing (a legacy line whose
    offer has no items any more) refuses the payment: the order stays pending."""
    lines = list(order.items.select_related("offer"))
    batches = granting.grant_lines(
        user_id=order.user_id, grants=[(line.offer, line) for line in lines], source="purchase",
        metadata={"order_id": order.pk}, now=timezone.now(),
    )
    granted = {batch.order_item_id for batch in batches}
    for line in lines:
        if line.pk not in granted:
            raise EmptyOffer(f"Offer '{line.offer.sku}' has no items: order #{order.pk} "
                             "cannot be honoured")


__all__ = ["PaidOrder", "locked_order", "mark_paid"]
