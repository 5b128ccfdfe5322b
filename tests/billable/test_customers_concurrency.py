"""Concurrent merges serialise on the account locks: no deadlock, ledger stays sound."""

from __future__ import annotations

import pytest

from billable.models import QuotaBatch
from billable.services import CustomerService, TransactionService
from tests.helpers import requires_postgres, run_in_threads

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


def test_opposite_merges_do_not_deadlock(make_user, make_product, make_offer):
    pack = make_offer("PACK", items=[(make_product("TOKENS"), 10)], price="1")
    first, second = make_user(), make_user()
    for account in (first, second):
        TransactionService.grant_offer(account.id, pack)
    pairs = [(first.id, second.id), (second.id, first.id)]

    results = run_in_threads(2, lambda i: CustomerService.merge_customers(*pairs[i]))

    assert all(isinstance(r, dict) for r in results), results
    owners = set(QuotaBatch.objects.values_list("user_id", flat=True))
    assert len(owners) == 1
    assert TransactionService.get_balance(owners.pop(), "TOKENS") == 20
    assert TransactionService.check_ledger() == []


def test_merge_racing_with_consumption_keeps_the_ledger(make_user, make_product, make_offer):
    pack = make_offer("PACK", items=[(make_product("TOKENS"), 10)], price="1")
    target, source = make_user(), make_user()
    TransactionService.grant_offer(source.id, pack)

    def work(index: int):
        if index == 0:
            return CustomerService.merge_customers(target.id, source.id)
        return TransactionService.consume_quota(source.id, "TOKENS", amount=1)

    results = run_in_threads(4, work)

    assert not any(isinstance(r, BaseException) for r in results), results
    spent = sum(1 for r in results[1:] if r["success"])
    assert TransactionService.get_balance(target.id, "TOKENS") == 10 - spent
    assert TransactionService.check_ledger() == []


def test_merge_racing_with_payments_and_refunds(make_user, make_product, make_offer):
    from billable.services import OrderService

    vip = make_product("VIP", product_type="period")
    make_offer("VIP_30D", items=[(vip, 1, "days", 30)], price="5")
    tokens_pack = make_offer("PACK", items=[(make_product("TOKENS"), 10)], price="1")
    target, source = make_user(), make_user()
    paid = OrderService.create_order(source.id, [{"sku": tokens_pack.sku}])
    OrderService.process_payment(paid.id, "P-0")
    pending = OrderService.create_order(source.id, [{"sku": "VIP_30D"}])

    def work(index: int):
        if index == 0:
            return CustomerService.merge_customers(target.id, source.id)
        if index == 1:
            return OrderService.process_payment(pending.id, "P-1")
        return OrderService.refund_order(paid.id)

    results = run_in_threads(3, work)

    assert not any(isinstance(r, BaseException) for r in results), results
    assert TransactionService.check_quota(target.id, "VIP")["can_use"] is True
    assert TransactionService.get_balance(target.id, "TOKENS") == 0
    assert TransactionService.check_ledger() == []
