"""Closing batches: expiry and revocation write DEBITs for what they remove."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billable.exceptions import OrderNotFound
from billable.models import Order, OrderItem, QuotaBatch, Transaction
from billable.services import BalanceService, TransactionService
from tests.billable.ledger_support import ledger, make_batch

pytestmark = pytest.mark.django_db
__all__ = ["ledger"]


@pytest.fixture
def credits(make_product):
    return make_product("CREDITS")


def test_expire_batches_debits_the_remainder(ledger, user, credits):
    past = make_batch(user, credits, 10, age_days=5, expires_in_days=-1)
    make_batch(user, credits, 4, expires_in_days=3)
    TransactionService.consume_quota(user.id, "CREDITS", amount=1)  # from the valid batch
    assert ledger.expire_batches() == 1
    past.refresh_from_db()
    assert (past.state, past.remaining_quantity) == ("EXPIRED", 0)
    debit = Transaction.objects.get(quota_batch=past, direction="DEBIT")
    assert (debit.amount, debit.action_type) == (10, "expiration")
    assert ledger.expire_batches() == 0
    assert TransactionService.get_balance(user.id, "CREDITS") == 3
    assert TransactionService.check_ledger() == []


def test_a_batch_expiring_exactly_now_is_not_spendable_and_is_expired(user, credits):
    batch = make_batch(user, credits, 2, expires_in_days=1)
    QuotaBatch.objects.filter(pk=batch.pk).update(expires_at=timezone.now())
    assert TransactionService.get_balance(user.id, "CREDITS") == 0
    assert TransactionService.expire_batches() == 1


def test_deactivate_expired_products_honours_user_id(user, make_user, credits):
    other = make_user()
    mine = make_batch(user, credits, 1, age_days=2, expires_in_days=-1)
    theirs = make_batch(other, credits, 1, age_days=2, expires_in_days=-1)
    assert BalanceService.deactivate_expired_products(user_id=user.id) == 1
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.state, theirs.state) == ("EXPIRED", "ACTIVE")
    assert BalanceService.deactivate_expired_products() == 1


def test_revoke_order_items_debits_what_is_left(ledger, user, credits, make_product, make_offer):
    vip = make_product("VIP", product_type="period")
    pack = make_offer(items=[(credits, 100)])
    month = make_offer(items=[(vip, 1, "days", 30)])
    order = Order.objects.create(user=user)
    lines = [OrderItem.objects.create(order=order, offer=pack, quantity=1, price=0),
             OrderItem.objects.create(order=order, offer=month, quantity=1, price=0)]
    TransactionService.grant_many(user.id, [(pack, lines[0]), (month, lines[1])])
    TransactionService.consume_quota(user.id, "CREDITS", amount=20)
    assert ledger.revoke_order_items(order, reason="refund") == 2
    assert TransactionService.get_balance(user.id, "CREDITS") == 0
    assert TransactionService.get_balance(user.id, "VIP") == 0
    refunds = Transaction.objects.filter(action_type="refund").order_by("amount")
    assert [r.amount for r in refunds] == [1, 80]
    assert all(r.related_object == order for r in refunds)
    assert set(QuotaBatch.objects.values_list("state", flat=True)) == {"REVOKED"}
    assert ledger.revoke_order_items(order) == 0
    assert TransactionService.check_ledger() == []


def test_revoke_marks_exhausted_batches_without_an_empty_debit(user, credits, make_offer):
    pack = make_offer(items=[(credits, 2)])
    order = Order.objects.create(user=user)
    line = OrderItem.objects.create(order=order, offer=pack, quantity=1, price=0)
    TransactionService.grant_offer(user.id, pack, order_item=line)
    TransactionService.consume_quota(user.id, "CREDITS", amount=2)
    assert TransactionService.revoke_order_items(order.pk) == 1
    assert not Transaction.objects.filter(action_type="refund").exists()


def test_future_period_batch_is_expired_only_after_its_end(user, make_product, make_offer):
    vip = make_product("VIP", product_type="period")
    offer = make_offer(items=[(vip, 1, "days", 30)])
    first = TransactionService.grant_offer(user.id, offer)[0]
    TransactionService.grant_offer(user.id, offer)
    QuotaBatch.objects.filter(pk=first.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert TransactionService.expire_batches() == 1
    assert QuotaBatch.objects.filter(state="ACTIVE").count() == 1


@pytest.mark.parametrize("order", ["abc", None, 1.5, True])
def test_revoke_with_a_bad_order_reference(order):
    with pytest.raises(OrderNotFound):
        TransactionService.revoke_order_items(order)


def test_revoke_of_an_unknown_order_is_order_not_found():
    with pytest.raises(OrderNotFound):
        TransactionService.revoke_order_items(987654)
