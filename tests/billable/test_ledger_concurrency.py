"""Real concurrency on PostgreSQL: threads with their own connections hitting one wallet."""

from __future__ import annotations

import itertools

import pytest

from billable.exceptions import InsufficientFunds
from billable.models import QuotaBatch, Transaction
from billable.services import TransactionService
from tests.helpers import requires_postgres, run_in_threads

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


def grant(user, product, quantity, make_offer, **period):
    extra = (period["unit"], period["value"]) if period else ()
    return TransactionService.grant_offer(user.id, make_offer(items=[(product, quantity, *extra)]))


def test_twelve_threads_spending_two_from_fifteen(user, make_product, make_offer):
    product = make_product("CREDITS")
    for quantity in (5, 5, 5):
        grant(user, product, quantity, make_offer)
    results = run_in_threads(12, lambda i: TransactionService.consume_quota(
        user.id, "CREDITS", amount=2))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(1 for r in results if r["success"]) == 7
    assert {r["error"] for r in results if not r["success"]} == {"insufficient_funds"}
    assert TransactionService.get_balance(user.id, "CREDITS") == 1
    assert TransactionService.check_ledger() == []


def test_six_threads_with_one_idempotency_key_debit_once(user, make_product, make_offer):
    product = make_product("CREDITS")
    grant(user, product, 100, make_offer)
    results = run_in_threads(6, lambda i: TransactionService.consume_quota(
        user.id, "CREDITS", amount=5, idempotency_key="same-request"))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert all(r["success"] for r in results)
    assert len({r["usage_id"] for r in results}) == 1
    assert Transaction.objects.filter(direction="DEBIT").count() == 1
    assert TransactionService.get_balance(user.id, "CREDITS") == 95


def test_concurrent_holds_never_hold_more_than_the_balance(user, make_product, make_offer):
    product = make_product("CREDITS")
    grant(user, product, 7, make_offer)
    grant(user, product, 3, make_offer)

    def hold(index: int) -> str | None:
        try:
            return TransactionService.reserve_quota(user.id, "CREDITS", 3)
        except InsufficientFunds:
            return None

    results = run_in_threads(8, hold)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(1 for r in results if r) == 3
    assert TransactionService.get_balance(user.id, "CREDITS") == 1
    assert TransactionService.check_ledger() == []


def test_mixed_operations_over_several_products_never_deadlock(user, make_product, make_offer,
                                                               settings):
    settings.BILLABLE_CONSUMPTION_ORDER = "expiring_first"
    keys = ["A", "B", "C"]
    for key in keys:
        product = make_product(key)
        for days in (30, 10, 20):
            grant(user, product, 20, make_offer, unit="days", value=days)
    currency = make_product("COINS", is_currency=True)
    grant(user, currency, 100, make_offer)
    swap = make_offer(items=[(QuotaBatch.objects.first().product, 1)], price="5",
                      currency="COINS")

    def work(index: int) -> object:
        key = keys[index % 3]
        if index % 4 == 0:
            rid = TransactionService.reserve_quota(user.id, key, 7)
            return TransactionService.commit_reservation(rid, 5)
        if index % 4 == 1:
            return TransactionService.exchange(user.id, offer=swap)
        if index % 4 == 2:
            return TransactionService.expire_batches()
        return TransactionService.consume_quota(user.id, key, amount=13)

    results = run_in_threads(16, work)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert TransactionService.check_ledger() == []
    assert all(b.remaining_quantity >= 0 for b in QuotaBatch.objects.all())


def test_concurrent_period_purchases_chain_instead_of_overlapping(user, make_product,
                                                                   make_offer):
    vip = make_product("VIP", product_type="period")
    offer = make_offer(items=[(vip, 1, "days", 30)])
    results = run_in_threads(4, lambda i: TransactionService.grant_offer(user.id, offer))
    assert not [r for r in results if isinstance(r, BaseException)], results
    batches = list(QuotaBatch.objects.order_by("valid_from"))
    for earlier, later in itertools.pairwise(batches):
        assert later.valid_from == earlier.expires_at
