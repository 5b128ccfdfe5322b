"""Concurrent confirmations of one order grant exactly once (PostgreSQL, real threads)."""

from __future__ import annotations

import pytest

from billable.exceptions import PaymentConflict
from billable.models import Order, Transaction
from billable.services import OrderService, TransactionService
from tests.helpers import requires_postgres, run_in_threads

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


def test_six_concurrent_confirmations_grant_once(user, make_product, make_offer):
    tokens = make_product("TOKENS")
    pack = make_offer("PACK", items=[(tokens, 10)], price="5")
    order = OrderService.create_order(user.id, [{"sku": pack.sku, "quantity": 2}])

    results = run_in_threads(6, lambda i: OrderService.process_payment(order.id, "PAY-1"))

    assert results == [True] * 6
    assert TransactionService.get_balance(user.id, "TOKENS") == 20
    assert Transaction.objects.filter(user=user, direction="CREDIT").count() == 1
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID


def test_one_payment_id_racing_for_two_orders_pays_one(user, make_product, make_offer):
    tokens = make_product("TOKENS")
    pack = make_offer("PACK", items=[(tokens, 10)], price="5")
    orders = [OrderService.create_order(user.id, [{"sku": pack.sku}]) for _ in range(2)]

    results = run_in_threads(2, lambda i: OrderService.process_payment(orders[i].id, "PAY-X"))

    assert sorted(type(r).__name__ for r in results) == ["PaymentConflict", "bool"]
    assert any(isinstance(r, PaymentConflict) for r in results)
    assert TransactionService.get_balance(user.id, "TOKENS") == 10
    assert Order.objects.filter(status=Order.Status.PAID).count() == 1


def test_different_payment_ids_racing_for_one_order_grant_once(user, make_product, make_offer):
    tokens = make_product("TOKENS")
    pack = make_offer("PACK", items=[(tokens, 10)], price="5")
    order = OrderService.create_order(user.id, [{"sku": pack.sku}])

    results = run_in_threads(4, lambda i: OrderService.process_payment(order.id, f"PAY-{i}"))

    assert sum(r is True for r in results) == 1
    assert sum(isinstance(r, PaymentConflict) for r in results) == 3
    assert TransactionService.get_balance(user.id, "TOKENS") == 10
