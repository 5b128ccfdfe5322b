"""Exchange: spend an internal currency and grant an offer in one transaction."""

from __future__ import annotations

import pytest

from billable.exceptions import CurrencyError, IdempotencyConflict, InvalidPrice, OfferNotFound
from billable.models import QuotaBatch, Transaction
from billable.services import TransactionService
from tests.billable.ledger_support import ledger, ledger_rows, make_batch

pytestmark = pytest.mark.django_db
__all__ = ["ledger"]


@pytest.fixture
def coins(make_product):
    return make_product("INTERNAL", name="Internal Credits", is_currency=True)


@pytest.fixture
def target(make_product):
    return make_product("TARGET")


@pytest.fixture
def swap_offer(make_offer, target):
    return make_offer("OFF_TARGET_5", items=[(target, 5)], price="30", currency="internal")


def test_exchange_spends_currency_and_grants(ledger, user, coins, swap_offer):
    make_batch(user, coins, 100)
    result = ledger.exchange(user.id, offer=swap_offer, metadata={"source": "shop"})
    assert result == {"success": True, "message": "Exchanged",
                      "metadata": {"source": "shop", "price": 30}}
    assert ledger.get_balance(user.id, "INTERNAL") == 70
    assert ledger.get_balance(user.id, "TARGET") == 5
    debit = Transaction.objects.get(direction="DEBIT")
    granted = QuotaBatch.objects.get(product__product_key="TARGET")
    assert debit.action_type == "exchange"
    assert debit.related_object == swap_offer
    assert debit.metadata["batch_ids"] == [str(granted.pk)]
    assert debit.metadata["offer_sku"] == "OFF_TARGET_5"
    credit = Transaction.objects.get(direction="CREDIT", quota_batch=granted)
    assert credit.action_type == "exchange"
    assert TransactionService.check_ledger() == []


def test_exchange_by_offer_id(user, coins, swap_offer):
    make_batch(user, coins, 30)
    assert TransactionService.exchange(user.id, offer_id=swap_offer.pk)["success"] is True
    assert TransactionService.get_balance(user.id, "INTERNAL") == 0


def test_short_balance_returns_the_consume_failure_and_grants_nothing(ledger, user, coins,
                                                                    swap_offer):
    make_batch(user, coins, 29)
    before = ledger_rows()
    assert ledger.exchange(user.id, offer=swap_offer) == {
        "success": False, "error": "insufficient_funds", "message": "Insufficient balance"}
    assert ledger_rows() == before
    assert ledger.get_balance(user.id, "TARGET") == 0


def test_no_currency_at_all(user, coins, swap_offer):
    assert TransactionService.exchange(user.id, offer=swap_offer)["error"] == "quota_exhausted"


def test_currency_must_exist(user, make_offer, target):
    offer = make_offer(items=[(target, 1)], price="10", currency="GHOST")
    with pytest.raises(CurrencyError, match=r"Currency product 'GHOST' not found\."):
        TransactionService.exchange(user.id, offer=offer)


def test_currency_must_be_marked(user, make_product, make_offer, target):
    make_product("NOT_CURRENCY")
    offer = make_offer(items=[(target, 1)], price="10", currency="not_currency")
    with pytest.raises(CurrencyError) as info:
        TransactionService.exchange(user.id, offer=offer)
    assert info.value.message == (
        "Product 'NOT_CURRENCY' is not marked as a currency for exchange.")


def test_inactive_currency_is_refused(user, coins, swap_offer):
    coins.is_active = False
    coins.save()
    make_batch(user, coins, 100)
    with pytest.raises(CurrencyError):
        TransactionService.exchange(user.id, offer=swap_offer)
    assert TransactionService.get_balance(user.id, "INTERNAL") == 100


@pytest.mark.parametrize("offer_ref", [None, 987654, "NO_SUCH"])
def test_offer_must_exist(user, offer_ref):
    with pytest.raises(OfferNotFound, match="Offer not found"):
        TransactionService.exchange(user.id, offer_id=offer_ref)


def test_inactive_offer_is_refused(user, coins, swap_offer):
    swap_offer.is_active = False
    swap_offer.save()
    make_batch(user, coins, 100)
    with pytest.raises(OfferNotFound):
        TransactionService.exchange(user.id, offer=swap_offer)
    with pytest.raises(OfferNotFound):
        TransactionService.exchange(user.id, offer_id=swap_offer.pk)


@pytest.mark.parametrize("price", ["10.50", "0", "0.99"])
def test_price_must_be_a_positive_whole_number(user, coins, make_offer, target, price):
    offer = make_offer(items=[(target, 1)], price=price, currency="INTERNAL")
    make_batch(user, coins, 100)
    with pytest.raises(InvalidPrice):
        TransactionService.exchange(user.id, offer=offer)
    assert TransactionService.get_balance(user.id, "INTERNAL") == 100


def test_exchange_idempotency(user, coins, swap_offer, make_offer, target):
    make_batch(user, coins, 100)
    first = TransactionService.exchange(user.id, offer=swap_offer, idempotency_key="buy-1")
    again = TransactionService.exchange(user.id, offer=swap_offer, idempotency_key="buy-1")
    assert first["message"] == "Exchanged"
    assert "idempotent" in again["message"]
    assert again["metadata"] == first["metadata"]
    assert TransactionService.get_balance(user.id, "INTERNAL") == 70
    other = make_offer(items=[(target, 1)], price="5", currency="INTERNAL")
    with pytest.raises(IdempotencyConflict):
        TransactionService.exchange(user.id, offer=other, idempotency_key="buy-1")
