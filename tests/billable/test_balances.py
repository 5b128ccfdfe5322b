"""BalanceService: spendable batches and per-product summaries."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from billable.exceptions import InvalidProductKey
from billable.services import BalanceService, TransactionService
from tests.billable.ledger_support import make_batch

pytestmark = pytest.mark.django_db


@pytest.fixture
def wallet(user, make_product):
    credits = make_product("CREDITS")
    vip = make_product("VIP", product_type="period")
    make_batch(user, credits, 50, age_days=2)
    make_batch(user, credits, 10, age_days=1, expires_in_days=5)
    make_batch(user, credits, 99, age_days=3, expires_in_days=-1)  # expired, job not run
    make_batch(user, vip, 1, expires_in_days=30)
    TransactionService.consume_quota(user.id, "CREDITS", amount=10)
    return user


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_active_products_lists_spendable_batches_oldest_first(wallet, mode):
    if mode == "sync":
        items = BalanceService.get_user_active_products(wallet.id)
    else:
        items = async_to_sync(BalanceService.aget_user_active_products)(wallet.id)
    assert [(b.product.product_key, b.remaining_quantity) for b in items] == [
        ("CREDITS", 40), ("CREDITS", 10), ("VIP", 1)]
    assert items[0].remaining_quantity == 40


def test_active_products_filtered_by_key_in_any_case(wallet):
    items = BalanceService.get_user_active_products(wallet.id, product_key="vip")
    assert [b.product.product_key for b in items] == ["VIP"]
    with pytest.raises(InvalidProductKey):
        BalanceService.get_user_active_products(wallet.id, product_key="  ")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_summary_by_product_key(wallet, mode):
    if mode == "sync":
        summary = BalanceService.get_balance_summary(wallet.id)
    else:
        summary = async_to_sync(BalanceService.aget_balance_summary)(wallet.id)
    assert set(summary) == {"CREDITS", "VIP"}
    credits = summary["CREDITS"]
    assert (credits["total"], credits["used"], credits["remaining"]) == (60, 10, 50)
    assert credits["is_unlimited"] is False
    assert credits["expiry"] is not None
    assert summary["VIP"]["is_unlimited"] is True


def test_summary_of_an_empty_wallet(user):
    assert BalanceService.get_balance_summary(user.id) == {}
