"""Whole stories across services: buy → confirm → spend → refund, with the ledger checked."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from billable.exceptions import OrderStateError
from billable.models import Order, QuotaBatch, Transaction
from billable.services import CustomerService, OrderService, TransactionService
from billable.services.identities import IdentityService
from billable.services.trials import TrialService

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_buy_confirm_consume_refund(mode, user, make_product, make_offer):
    call = (lambda f, *a, **k: f(*a, **k)) if mode == "sync" else (
        lambda f, *a, **k: async_to_sync(f)(*a, **k))
    prefix = "" if mode == "sync" else "a"
    diamonds = make_product("DIAMONDS")
    vip = make_product("VIP", product_type="period")
    make_offer("DIAMONDS_100", items=[(diamonds, 100)], price="10.00", currency="RUB")
    make_offer("VIP_30D", items=[(vip, 1, "days", 30)], price="5.00", currency="RUB")

    order = call(getattr(OrderService, f"{prefix}create_order"), user.id,
                 [{"sku": "diamonds_100", "quantity": 2}, {"sku": "vip_30d"}])
    assert order.total_amount == 25
    assert call(getattr(OrderService, f"{prefix}process_payment"), order.id, "PAY-1") is True
    assert TransactionService.get_balance(user.id, "DIAMONDS") == 200
    assert TransactionService.check_quota(user.id, "VIP")["can_use"] is True

    spent = TransactionService.consume_quota(user.id, "DIAMONDS", amount=30)
    assert spent["success"] is True and spent["remaining"] == 170

    assert call(getattr(OrderService, f"{prefix}refund_order"), order.id, "fraud") is True
    assert TransactionService.get_balance(user.id, "DIAMONDS") == 0
    assert TransactionService.check_quota(user.id, "VIP")["can_use"] is False
    refunds = Transaction.objects.filter(action_type="refund").order_by("amount")
    assert [(t.direction, t.amount) for t in refunds] == [("DEBIT", 1), ("DEBIT", 170)]
    assert set(QuotaBatch.objects.values_list("state", flat=True)) == {"REVOKED"}
    assert TransactionService.check_ledger() == []

    with pytest.raises(OrderStateError):
        call(getattr(OrderService, f"{prefix}process_payment"), order.id, "PAY-1")
    assert Order.objects.get(pk=order.pk).status == Order.Status.REFUNDED
    assert TransactionService.get_balance(user.id, "DIAMONDS") == 0
    assert TransactionService.check_ledger() == []


def test_two_accounts_of_one_person_merge_into_one_wallet(make_product, make_offer):
    credits = make_product("CREDITS", is_currency=True)
    predictions = make_product("PREDICTIONS")
    make_offer("PACK", items=[(credits, 100)], price="50", currency="XTR")
    make_offer("TRIAL", items=[(predictions, 3)], price="0")

    bot = IdentityService.resolve_user(provider="telegram", external_id="42").user
    web = IdentityService.resolve_user(provider="email", external_id="a@b.c").user
    TrialService.claim_trial(bot.id, "TRIAL")
    order = OrderService.create_order(web.id, [{"sku": "PACK"}])
    OrderService.process_payment(order.id, "ch_1", "telegram_stars")
    TransactionService.consume_quota(web.id, "CREDITS", amount=10)

    CustomerService.merge_customers(bot.id, web.id)

    assert IdentityService.get_user(provider="email", external_id="a@b.c").pk == bot.pk
    assert TransactionService.get_balance(bot.id, "CREDITS") == 90
    assert TransactionService.get_balance(bot.id, "PREDICTIONS") == 3
    assert TrialService.is_eligible({"telegram": "42"}) is False
    assert OrderService.refund_order(order.id) is True
    assert TransactionService.get_balance(bot.id, "CREDITS") == 0
    assert TransactionService.check_ledger() == []
