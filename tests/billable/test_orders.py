"""OrderService: catalog pricing, validation, the payment state machine, cancel, refund."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billable.exceptions import (
    BillableError,
    InvalidAmount,
    InvalidInput,
    OfferNotFound,
    OrderNotFound,
    OrderStateError,
    PaymentConflict,
    UserNotFound,
)
from billable.models import Order, QuotaBatch, Transaction
from billable.services import OrderService, TransactionService
from billable.services import orders as orders_module
from billable.signals import order_confirmed

pytestmark = pytest.mark.django_db


@pytest.fixture
def tokens(make_product):
    return make_product("TOKENS")


@pytest.fixture
def pack(make_offer, tokens):
    return make_offer("PACK_100", items=[(tokens, 100)], price="9.99")


def _sync_or_async(mode, name):
    method = getattr(OrderService, name if mode == "sync" else f"a{name}")
    return method if mode == "sync" else async_to_sync(method)


# -- create_order ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_create_order_prices_lines_from_the_catalog(mode, user, pack):
    create = _sync_or_async(mode, "create_order")
    order = create(user.id, [{"sku": "pack_100", "quantity": 3, "price": "0.01"}],
                   {"source": "web"})
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert order.total_amount == Decimal("29.97")
    assert order.currency == "USD"
    assert order.metadata == {"source": "web"}
    line = order.items.get()
    assert (line.offer_id, line.quantity, line.price) == (pack.id, 3, Decimal("9.99"))


def test_create_order_quantity_defaults_to_one(user, pack):
    order = OrderService.create_order(user.id, [{"sku": pack.sku}])
    assert order.items.get().quantity == 1
    assert order.total_amount == Decimal("9.99")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_create_order_unknown_sku_names_the_raw_sku(mode, user):
    create = _sync_or_async(mode, "create_order")
    with pytest.raises(ValueError, match=r"Offer not found for sku: 'nonexistent_sku_xyz'"):
        create(user.id, [{"sku": "nonexistent_sku_xyz", "quantity": 1}])
    assert not Order.objects.exists()


def test_create_order_refuses_inactive_offer(user, make_offer, tokens):
    make_offer("OLD_PACK", items=[(tokens, 1)], price="1", is_active=False)
    with pytest.raises(OfferNotFound, match="Offer not found for sku: 'old_pack'"):
        OrderService.create_order(user.id, [{"sku": "old_pack"}])


@pytest.mark.parametrize("item", [{"quantity": 1}, {"sku": ""}, {"sku": "   "}, {"sku": 12}])
def test_create_order_requires_sku(user, item):
    with pytest.raises(InvalidInput, match=r"Item must have 'sku'"):
        OrderService.create_order(user.id, [item])


@pytest.mark.parametrize("quantity", [0, -1, 1.5, 2.0, True, "2", None, 10**7])
def test_create_order_refuses_bad_quantities(user, pack, quantity):
    with pytest.raises(InvalidAmount):
        OrderService.create_order(user.id, [{"sku": pack.sku, "quantity": quantity}])
    assert not Order.objects.exists()


@pytest.mark.parametrize("items", [[], "PACK_100", {"sku": "PACK_100"}, None, ["PACK_100"]])
def test_create_order_refuses_malformed_items(user, pack, items):
    with pytest.raises(InvalidInput):
        OrderService.create_order(user.id, items)


def test_create_order_refuses_totals_beyond_the_amount_column(user, make_offer, tokens):
    make_offer("GOLD_BAR", items=[(tokens, 1)], price="900000000000000000")
    with pytest.raises(InvalidAmount, match="too large"):
        OrderService.create_order(user.id, [{"sku": "GOLD_BAR", "quantity": 2}])
    assert not Order.objects.exists()


def test_create_order_refuses_mixed_currencies(user, pack, make_offer, tokens):
    make_offer("STARS_PACK", items=[(tokens, 10)], price="50", currency="XTR")
    with pytest.raises(InvalidInput, match="same currency"):
        OrderService.create_order(user.id, [{"sku": pack.sku}, {"sku": "STARS_PACK"}])
    assert not Order.objects.exists()


def test_create_order_uses_the_offers_currency(user, make_offer, tokens):
    make_offer("STARS_PACK", items=[(tokens, 10)], price="50", currency="XTR")
    order = OrderService.create_order(user.id, [{"sku": "stars_pack", "quantity": 2}])
    assert (order.currency, order.total_amount) == ("XTR", Decimal("100"))


@pytest.mark.parametrize("user_id", [987654, None, "abc", True])
def test_create_order_refuses_unknown_user(pack, user_id):
    with pytest.raises(UserNotFound):
        OrderService.create_order(user_id, [{"sku": pack.sku}])


def test_create_order_refuses_non_dict_metadata(user, pack):
    with pytest.raises(InvalidInput):
        OrderService.create_order(user.id, [{"sku": pack.sku}], metadata=["x"])


# -- payment -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_process_payment_grants_every_line_once(mode, user, pack, make_offer, make_product):
    gems = make_product("GEMS")
    bundle = make_offer("BUNDLE", items=[(gems, 5)], price="1")
    order = OrderService.create_order(user.id, [{"sku": pack.sku, "quantity": 2},
                                                {"sku": bundle.sku}])
    pay = _sync_or_async(mode, "process_payment")
    assert pay(order.id, payment_id="PAY-1") is True
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert (order.payment_id, order.payment_method) == ("PAY-1", "manual")
    assert order.paid_at is not None
    assert TransactionService.get_balance(user.id, "TOKENS") == 200
    assert TransactionService.get_balance(user.id, "GEMS") == 5
    credits = Transaction.objects.filter(user=user, direction="CREDIT")
    assert set(credits.values_list("action_type", flat=True)) == {"purchase"}
    assert QuotaBatch.objects.filter(order_item__order=order).count() == 2


def test_pay_order_returns_the_paid_order(user, pack):
    order = OrderService.create_order(user.id, [{"sku": pack.sku}])
    paid = OrderService.pay_order(order.id, payment_id="ch_1", payment_method="telegram_stars")
    assert paid.pk == order.pk
    assert (paid.status, paid.payment_method) == ("paid", "telegram_stars")


def test_replay_with_same_payment_id_is_a_noop_success(user, pack):
    order = OrderService.create_order(user.id, [{"sku": pack.sku}])
    OrderService.process_payment(order.id, payment_id="PAY-1")
    assert OrderService.process_payment(order.id, payment_id="PAY-1") is True
    assert OrderService.process_payment(order.id, "PAY-1", "manual") is True
    assert TransactionService.get_balance(user.id, "TOKENS") == 100
    assert Transaction.objects.filter(user=user).count() == 1


def test_paid_order_refuses_another_payment_id(user, pack):
    order = OrderService.create_order(user.id, [{"sku": pack.sku}])
    OrderService.process_payment(order.id, payment_id="PAY-1")
    for other in ("PAY-2", None):
        with pytest.raises(PaymentConflict):
            OrderService.process_payment(order.id, payment_id=other)
    assert TransactionService.get_balance(user.id, "TOKENS") == 100


def test_payment_id_cannot_pay_two_orders(user, pack):
    first = OrderService.create_order(user.id, [{"sku": pack.sku}])
    second = OrderService.create_order(user.id, [{"sku": pack.sku}])
    OrderService.process_payment(first.id, payment_id="PAY-1")
    with pytest.raises(PaymentConflict):
        OrderService.process_payment(second.id, payment_id="PAY-1")
    second.refresh_from_db()
    assert second.status == Order.Status.PENDING
    assert TransactionService.get_balance(user.id, "TOKENS") == 100


def test_same_payment_id_under_another_method_is_another_payment(user, pack):
    first = OrderService.create_order(user.id, [{"sku": pack.sku}])
    second = OrderService.create_order(user.id, [{"sku": pack.sku}])
    OrderService.process_payment(first.id, payment_id="42", payment_method="stripe")
    OrderService.process_payment(second.id, payment_id="42", payment_method="telegram_stars")
    assert TransactionService.get_balance(user.id, "TOKENS") == 200


@pytest.mark.parametrize("end_state", ["cancelled", "refunded"])
def test_cancelled_or_refunded_order_is_never_paid_again(user, pack, end_state):
    order = OrderService.create_order(user.id, [{"sku": pack.sku}])
    if end_state == "cancelled":
        OrderService.cancel_order(order.id)
    else:
        OrderService.process_payment(order.id, payment_id="PAY-1")
        OrderService.refund_order(order.id)
    with pytest.raises(OrderStateError):
        OrderService.process_payment(order.id, payment_id="PAY-9")
    order.refresh_from_db()
    assert order.status == end_state
    assert TransactionService.get_balance(user.id, "TOKENS") == 0


@pytest.mark.parametrize("order_id", [999999, "nope", None, -1])
def test_unknown_order_raises_order_not_found(order_id):
    for name in ("process_payment", "cancel_order", "refund_order", "get_order"):
        with pytest.raises(OrderNotFound, match="Order not found"):
            getattr(OrderService, name)(order_id)


def test_payment_id_is_validated(user, pack):
    order = OrderService.create_order(user.id, [{"sku": pack.sku}])
    with pytest.raises(InvalidInput):
        OrderService.process_payment(order.id, payment_id="x" * 256)
    with pytest.raises(InvalidInput):
        OrderService.process_payment(order.id, payment_id=["x"])
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING


def test_failed_grant_leaves_the_order_pending(user, pack, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("ledger down")

    order = OrderService.create_order(user.id, [{"sku": pack.sku}])
    monkeypatch.setattr(orders_module.granting, "grant_lines", broken)
    with pytest.raises(RuntimeError):
        OrderService.process_payment(order.id, payment_id="PAY-1")
    order.refresh_from_db()
    assert (order.status, order.payment_id, order.paid_at) == ("pending", None, None)
    monkeypatch.undo()
    assert OrderService.process_payment(order.id, payment_id="PAY-1") is True
    assert TransactionService.get_balance(user.id, "TOKENS") == 100


def test_order_confirmed_is_sent_after_commit(user, pack, django_capture_on_commit_callbacks):
    seen = []

    def receiver(sender, order, **kwargs):
        seen.append(order.pk)

    order_confirmed.connect(receiver)
    try:
        order = OrderService.create_order(user.id, [{"sku": pack.sku}])
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            OrderService.process_payment(order.id, payment_id="P")
        assert seen == []
        for callback in callbacks:
            callback()
        assert seen == [order.pk]
    finally:
        order_confirmed.disconnect(receiver)


def test_payment_statements_do_not_grow_with_offer_items(user, make_product, make_offer):
    def statements(items_per_offer: int) -> int:
        products = [make_product() for _ in range(items_per_offer)]
        offers = [make_offer(items=[(p, 1) for p in products], price="1") for _ in range(3)]
        order = OrderService.create_order(user.id, [{"sku": o.sku} for o in offers])
        with CaptureQueriesContext(connection) as ctx:
            OrderService.process_payment(order.id)
        return len([q for q in ctx.captured_queries
                    if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE"))])

    assert statements(1) == statements(6)


# -- cancel and refund -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_cancel_pending_order(mode, user, pack):
    order = OrderService.create_order(user.id, [{"sku": pack.sku}])
    cancel = _sync_or_async(mode, "cancel_order")
    assert cancel(order.id, "changed mind") is True
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert order.metadata["cancel_reason"] == "changed mind"
    assert cancel(order.id) is True


def test_cancel_paid_order_is_refused(user, pack):
    order = OrderService.create_order(user.id, [{"sku": pack.sku}])
    OrderService.process_payment(order.id, payment_id="P")
    assert OrderService.cancel_order(order.id) is False
    with pytest.raises(OrderStateError):
        OrderService.cancel_pending_order(order.id)
    order.refresh_from_db()
    assert order.status == Order.Status.PAID


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_refund_revokes_what_is_left(mode, user, pack):
    order = OrderService.create_order(user.id, [{"sku": pack.sku}])
    OrderService.process_payment(order.id, payment_id="PAY-QTY")
    TransactionService.consume_quota(user.id, "TOKENS", amount=20)
    refund = _sync_or_async(mode, "refund_order")
    assert refund(order.id, "Customer changed mind") is True
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    assert order.metadata["refund_reason"] == "Customer changed mind"
    batch = QuotaBatch.objects.get(order_item__order=order)
    assert (batch.state, batch.remaining_quantity) == (QuotaBatch.State.REVOKED, 0)
    debit = Transaction.objects.get(quota_batch=batch, action_type="refund")
    assert (debit.direction, debit.amount) == ("DEBIT", 80)
    assert TransactionService.get_balance(user.id, "TOKENS") == 0
    assert refund(order.id) is False
    assert Transaction.objects.filter(action_type="refund").count() == 1


def test_refund_of_pending_order_returns_false(user, pack):
    order = OrderService.create_order(user.id, [{"sku": pack.sku}])
    assert OrderService.refund_order(order.id) is False
    with pytest.raises(OrderStateError):
        OrderService.refund_paid_order(order.id)
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING


def test_refund_paid_order_returns_the_order(user, pack):
    order = OrderService.create_order(user.id, [{"sku": pack.sku}])
    OrderService.pay_order(order.id, payment_id="P")
    refunded = OrderService.refund_paid_order(order.id, reason="r")
    assert refunded.status == Order.Status.REFUNDED


# -- serialisation -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_serialize_order_to_dict(mode, user, pack):
    order = OrderService.create_order(user.id, [{"sku": pack.sku, "quantity": 2}], {"k": "v"})
    OrderService.process_payment(order.id, payment_id="PAY-S")
    serialize = _sync_or_async(mode, "serialize_order_to_dict")
    data = serialize(OrderService.get_order(order.id))
    item = order.items.get()
    assert data == {
        "id": order.id, "user_id": user.id, "status": "paid",
        "total_amount": Decimal("19.98"), "currency": "USD", "payment_method": "manual",
        "payment_id": "PAY-S", "created_at": order.created_at,
        "paid_at": Order.objects.get(pk=order.pk).paid_at,
        "items": [{"id": item.id, "sku": "PACK_100", "quantity": 2, "price": Decimal("9.99")}],
        "metadata": {"k": "v"},
    }


def test_errors_share_the_billable_root(user):
    with pytest.raises(BillableError) as info:
        OrderService.create_order(user.id, [{"sku": "missing"}])
    assert info.value.code == "offer_not_found"
