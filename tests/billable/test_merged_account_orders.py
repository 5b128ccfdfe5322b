"""An order of an account a customer merge emptied is paid to the account it was merged into.

The merge moves the source's orders, but not one created afterwards for the emptied account (a
stale id held by another process) or while the merge ran (its transaction never saw the row).
Granted as it stood, such an order credited the emptied account: the customer paid and never
saw the units.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import close_old_connections, transaction

from billable.ledger.audit import check_ledger
from billable.models import Order, QuotaBatch
from billable.services import CustomerService, OrderService, TransactionService
from tests.helpers import requires_postgres

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pack(make_product: Any, make_offer: Any) -> Any:
    credits = make_product("CREDITS")
    return make_offer("PACK_10", items=[(credits, 10)], price="5")


def balance(user: Any) -> int:
    return TransactionService.get_balance(user.pk, "CREDITS")


def test_an_order_created_for_a_merged_away_account_is_paid_to_its_target(make_user,
                                                                          pack) -> None:
    target, source = make_user(), make_user()
    CustomerService.merge_customers(target.pk, source.pk)
    order = OrderService.create_order(source.pk, [{"sku": "PACK_10", "quantity": 1}])  # stale

    OrderService.pay_order(order.pk, payment_id="ch-1", payment_method="stripe")

    order.refresh_from_db()
    assert (order.status, order.user_id) == ("paid", target.pk)
    assert (balance(target), balance(source)) == (10, 0)
    assert not QuotaBatch.objects.filter(user_id=source.pk).exists()
    assert check_ledger() == []
    # a replay of the payment changes nothing
    OrderService.pay_order(order.pk, payment_id="ch-1", payment_method="stripe")
    assert balance(target) == 10


def test_a_chain_of_merges_is_followed_to_its_end(make_user, pack) -> None:
    first, middle, last = make_user(), make_user(), make_user()
    CustomerService.merge_customers(middle.pk, first.pk)
    CustomerService.merge_customers(last.pk, middle.pk)
    order = OrderService.create_order(first.pk, [{"sku": "PACK_10", "quantity": 2}])
    OrderService.pay_order(order.pk, payment_id="ch-2")
    assert Order.objects.get(pk=order.pk).user_id == last.pk
    assert (balance(first), balance(middle), balance(last)) == (0, 0, 20)
    assert check_ledger() == []


def test_an_order_of_an_account_never_merged_stays_where_it_is(make_user, pack) -> None:
    buyer, other = make_user(), make_user()
    CustomerService.merge_customers(buyer.pk, other.pk)  # the buyer is a merge's target
    order = OrderService.create_order(buyer.pk, [{"sku": "PACK_10", "quantity": 1}])
    OrderService.pay_order(order.pk, payment_id="ch-3")
    assert Order.objects.get(pk=order.pk).user_id == buyer.pk and balance(buyer) == 10


@requires_postgres
def test_an_order_paid_while_its_account_is_being_merged_goes_to_the_target(make_user,
                                                                            pack) -> None:
    """Real threads: the merge holds its transaction open while an order for the source is
    created and paid; the payment waits for the merge and then credits the target."""
    target, source = make_user(), make_user()
    merged, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def merge() -> None:
        try:
            with transaction.atomic():
                CustomerService.merge_customers(target.pk, source.pk)
                merged.set()
                release.wait(10)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            merged.set()
        finally:
            close_old_connections()

    paid: list[Any] = []

    def buy() -> None:
        try:
            order = OrderService.create_order(source.pk, [{"sku": "PACK_10", "quantity": 1}])
            paid.append(OrderService.pay_order(order.pk, payment_id="ch-race"))
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_old_connections()

    merger = threading.Thread(target=merge)
    merger.start()
    assert merged.wait(10)
    buyer = threading.Thread(target=buy)
    buyer.start()
    buyer.join(1.0)
    assert buyer.is_alive(), "the payment should wait for the merge's account lock"
    release.set()
    merger.join(10)
    buyer.join(10)
    assert not errors, errors
    order = Order.objects.get(pk=paid[0].pk)
    assert (order.status, order.user_id) == ("paid", target.pk)
    assert (balance(target), balance(source)) == (10, 0)
    assert check_ledger() == []
