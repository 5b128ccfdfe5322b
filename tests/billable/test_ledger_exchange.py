"""Exchange: spend an internal currency and grant an offer in one transaction."""

from __future__ import annotations

import pytest

from billable.exceptions import (
    CurrencyError,
    EmptyOffer,
    IdempotencyConflict,
    InvalidPrice,
    OfferNotFound,
)
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


def _broken_offers(make_offer, make_product, target):
    """Offers an exchange refuses before claiming its key, one per kind of refusal."""
    make_product("PLAIN")
    make_product("RETIRED_COINS", is_currency=True, is_active=False)
    return {
        "missing currency": make_offer(items=[(target, 1)], price="5", currency="GHOST"),
        "not a currency": make_offer(items=[(target, 1)], price="5", currency="PLAIN"),
        "retired currency": make_offer(items=[(target, 1)], price="5", currency="RETIRED_COINS"),
        "fractional price": make_offer(items=[(target, 1)], price="2.50", currency="INTERNAL"),
        "no items": make_offer(items=[], price="5", currency="INTERNAL"),
    }


@pytest.mark.parametrize("refusal", ["missing currency", "not a currency", "retired currency",
                                     "fractional price", "no items"])
def test_a_reused_key_is_a_conflict_even_when_the_new_request_is_refused(
        user, coins, swap_offer, make_offer, make_product, target, refusal):
    """Before: the refusal (400 ``currency_invalid`` / ``invalid_price`` / ``offer_has_no_items``)
    answered first, hiding that the key had been used for another offer."""
    broken = _broken_offers(make_offer, make_product, target)[refusal]
    make_batch(user, coins, 100)
    TransactionService.exchange(user.id, offer=swap_offer, idempotency_key="buy-1")
    before = ledger_rows()
    with pytest.raises(IdempotencyConflict) as caught:
        TransactionService.exchange(user.id, offer=broken, idempotency_key="buy-1")
    assert caught.value.code == "idempotency_conflict"
    with pytest.raises((CurrencyError, InvalidPrice, EmptyOffer)):  # a fresh key: the refusal
        TransactionService.exchange(user.id, offer=broken, idempotency_key="buy-2")
    with pytest.raises((CurrencyError, InvalidPrice, EmptyOffer)):  # no key: the refusal
        TransactionService.exchange(user.id, offer=broken)
    assert ledger_rows() == before


@pytest.mark.parametrize("named", ["NO_SUCH_OFFER", 10**6, None])
def test_a_reused_key_with_an_unknown_offer_is_a_conflict(user, coins, swap_offer, named):
    make_batch(user, coins, 100)
    TransactionService.exchange(user.id, offer=swap_offer, idempotency_key="buy-1")
    with pytest.raises(IdempotencyConflict):
        TransactionService.exchange(user.id, offer_id=named, idempotency_key="buy-1")
    with pytest.raises(OfferNotFound):
        TransactionService.exchange(user.id, offer_id=named, idempotency_key="buy-2")
    assert TransactionService.get_balance(user.id, "INTERNAL") == 70


@pytest.mark.parametrize("retire", ["currency", "offer"])
def test_a_retry_after_the_currency_or_offer_was_retired_replays(user, coins, swap_offer,
                                                                 retire):
    """The same request under the same key answers what it answered, although it would be
    refused now: the exchange did happen (nothing is written again)."""
    make_batch(user, coins, 100)
    first = TransactionService.exchange(user.id, offer=swap_offer, idempotency_key="buy-1")
    retired = coins if retire == "currency" else swap_offer
    type(retired).objects.filter(pk=retired.pk).update(is_active=False)
    swap_offer.refresh_from_db()
    before = ledger_rows()
    again = TransactionService.exchange(user.id, offer_id="off_target_5", idempotency_key="buy-1")
    assert again == {"success": True, "message": "Exchanged previously (idempotent)",
                     "metadata": first["metadata"]}
    assert ledger_rows() == before
    with pytest.raises((CurrencyError, OfferNotFound)):
        TransactionService.exchange(user.id, offer_id="off_target_5", idempotency_key="buy-2")


def test_the_key_is_read_only_when_an_exchange_is_refused(user, coins, swap_offer, make_offer,
                                                          make_product, target):
    """The normal path costs what it did (the key is only claimed, one INSERT); a refusal
    without a key touches no key; a refusal under a key reads it once."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    broken = _broken_offers(make_offer, make_product, target)["missing currency"]
    make_batch(user, coins, 100)

    def key_statements(run):
        with CaptureQueriesContext(connection) as seen:
            try:
                run()
            except (CurrencyError, IdempotencyConflict):
                pass
        return [q["sql"].split()[0] for q in seen if "billable_idempotency_keys" in q["sql"]]

    assert key_statements(lambda: TransactionService.exchange(
        user.id, offer=swap_offer, idempotency_key="buy-1")) == ["INSERT"]
    assert key_statements(lambda: TransactionService.exchange(user.id, offer=broken)) == []
    assert key_statements(lambda: TransactionService.exchange(
        user.id, offer=broken, idempotency_key="buy-1")) == ["SELECT"]
