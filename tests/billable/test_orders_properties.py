"""Property test: random create/pay/cancel/refund/consume sequences keep the state machine
and the ledger invariant (hypothesis; each example runs in a rolled-back transaction)."""

from __future__ import annotations

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billable.exceptions import OrderStateError, PaymentConflict
from billable.models import Order, QuotaBatch, Transaction
from billable.services import OrderService, TransactionService

pytestmark = pytest.mark.django_db

OPS = st.lists(
    st.tuples(st.sampled_from(["create", "pay", "cancel", "refund", "consume"]),
              st.integers(0, 3), st.integers(0, 2), st.integers(1, 30)),
    min_size=1, max_size=25,
)
NEXT = {("pending", "pay"): "paid", ("pending", "cancel"): "cancelled",
        ("paid", "refund"): "refunded", ("cancelled", "cancel"): "cancelled"}


def _apply(op, order, payment, model):
    """Run one operation; return the status the model expects afterwards."""
    state, paid_with = model.get(order.pk, ("pending", None))
    try:
        if op == "pay":
            OrderService.process_payment(order.pk, payment_id=f"P{payment}-{order.pk}")
        else:
            method = OrderService.cancel_order if op == "cancel" else OrderService.refund_order
            done = method(order.pk)
            assert done is ((state, op) in NEXT)
            if not done:
                return state, paid_with
    except (OrderStateError, PaymentConflict):
        assert (state, op) not in NEXT
        assert not (state == "paid" and paid_with == payment)
        return state, paid_with
    if op == "pay" and state == "paid":
        assert paid_with == payment
        return state, paid_with
    assert (state, op) in NEXT
    return NEXT[(state, op)], payment if op == "pay" else paid_with


def _check(user, model):
    assert TransactionService.check_ledger() == []
    assert TransactionService.get_balance(user.id, "TOKENS") >= 0
    for order in Order.objects.all():
        state = model.get(order.pk, ("pending", None))[0]
        assert order.status == state
        credits = Transaction.objects.filter(quota_batch__order_item__order=order,
                                             direction="CREDIT").count()
        assert credits == (1 if state in ("paid", "refunded") else 0)
        if state == "refunded":
            batch = QuotaBatch.objects.get(order_item__order=order)
            assert (batch.state, batch.remaining_quantity) == ("REVOKED", 0)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=OPS)
def test_random_order_histories_keep_the_rules(ops, make_user, make_product, make_offer):
    with transaction.atomic():
        user = make_user()
        pack = make_offer(items=[(make_product("TOKENS"), 20)], price="3")
        orders: list[Order] = []
        model: dict[int, tuple[str, int | None]] = {}
        for op, index, payment, amount in ops:
            if op == "create" or not orders:
                orders.append(OrderService.create_order(user.id, [{"sku": pack.sku}]))
            elif op == "consume":
                TransactionService.consume_quota(user.id, "TOKENS", amount=amount)
            else:
                order = orders[index % len(orders)]
                model[order.pk] = _apply(op, order, payment, model)
            _check(user, model)
        transaction.set_rollback(True)
