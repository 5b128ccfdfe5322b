"""Granting offers: batches, CREDIT rows, periods, extension, idempotency and bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.contenttypes.models import ContentType

from billable.exceptions import IdempotencyConflict, InvalidInput, OfferNotFound, UserNotFound
from billable.ledger.periods import add_months, period_end
from billable.models import Order, OrderItem, QuotaBatch, Transaction
from billable.services import TransactionService
from tests.billable.ledger_support import ledger, ledger_rows

pytestmark = pytest.mark.django_db
__all__ = ["ledger"]


@pytest.fixture
def tokens(make_product):
    return make_product("TOKENS")


@pytest.fixture
def premium(make_product):
    return make_product("PREMIUM", product_type="period")


def test_one_batch_and_credit_per_item_times_order_quantity(ledger, user, tokens, make_product,
                                                          make_offer):
    extra = make_product("EXTRA")
    offer = make_offer("BUNDLE", items=[(tokens, 10), (extra, 3)])
    order = Order.objects.create(user=user)
    line = OrderItem.objects.create(order=order, offer=offer, quantity=2, price=0)
    batches = ledger.grant_offer(user.id, offer, order_item=line, source="purchase",
                                 metadata={"order": order.pk})
    assert sorted((b.product.product_key, b.initial_quantity) for b in batches) == [
        ("EXTRA", 6), ("TOKENS", 20)]
    credits = Transaction.objects.filter(direction="CREDIT")
    assert sorted(c.amount for c in credits) == [6, 20]
    assert {c.action_type for c in credits} == {"purchase"}
    assert all(c.related_object == line for c in credits)
    assert all(c.metadata == {"order": order.pk} for c in credits)
    assert all(b.order_item == line and b.source_offer == offer for b in batches)


def test_credit_points_at_the_offer_without_an_order_item(user, tokens, make_offer):
    offer = make_offer(items=[(tokens, 1)])
    TransactionService.grant_offer(user.id, offer, source="welcome_bonus")
    credit = Transaction.objects.get()
    assert credit.content_type == ContentType.objects.get_for_model(offer)
    assert credit.related_object == offer
    assert credit.action_type == "welcome_bonus"


def test_grant_offer_accepts_sku_in_any_case_and_pk(user, tokens, make_offer):
    offer = make_offer("OFF_TOKENS", items=[(tokens, 4)])
    TransactionService.grant_offer(user.id, "off_tokens")
    TransactionService.grant_offer(user.id, offer.pk)
    assert TransactionService.get_balance(user.id, "tokens") == 8


@pytest.mark.parametrize("offer", ["NO_SUCH_SKU", 987654, None, "", 1.5])
def test_unknown_offer_is_refused_and_nothing_written(user, offer):
    with pytest.raises(OfferNotFound):
        TransactionService.grant_offer(user.id, offer)
    assert ledger_rows() == 0


def test_unknown_user_is_refused_and_nothing_written(tokens, make_offer):
    with pytest.raises(UserNotFound):
        TransactionService.grant_offer(999_999, make_offer(items=[(tokens, 1)]))
    assert QuotaBatch.objects.count() == 0 and ledger_rows() == 0


@pytest.mark.parametrize(("unit", "value", "expected"), [
    ("hours", 5, datetime(2024, 1, 31, 17, 0, tzinfo=UTC)),
    ("days", 30, datetime(2024, 3, 1, 12, 0, tzinfo=UTC)),
    ("months", 1, datetime(2024, 2, 29, 12, 0, tzinfo=UTC)),
    ("months", 13, datetime(2025, 2, 28, 12, 0, tzinfo=UTC)),
    ("years", 1, datetime(2025, 1, 31, 12, 0, tzinfo=UTC)),
    ("forever", 3, None),
    ("days", None, None),
])
def test_period_end_calendar_arithmetic(unit, value, expected):
    assert period_end(datetime(2024, 1, 31, 12, 0, tzinfo=UTC), unit, value) == expected


def test_add_months_clamps_to_month_end():
    assert add_months(datetime(2023, 12, 31, tzinfo=UTC), 2) == datetime(2024, 2, 29, tzinfo=UTC)


def test_expiry_computed_from_the_item_period(user, tokens, make_offer):
    offer = make_offer(items=[(tokens, 10, "days", 30)])
    batch = TransactionService.grant_offer(user.id, offer)[0]
    assert batch.expires_at - batch.valid_from == timedelta(days=30)
    assert batch.valid_from == batch.created_at


def test_period_purchases_extend_running_access(ledger, user, premium, make_offer):
    offer = make_offer("PREMIUM_30", items=[(premium, 1, "days", 30)])
    first = ledger.grant_offer(user.id, offer)[0]
    second = ledger.grant_offer(user.id, offer)[0]
    assert second.valid_from == first.expires_at
    assert second.expires_at - first.valid_from == timedelta(days=60)
    assert ledger.get_balance(user.id, "PREMIUM") == 1  # the second starts later
    # once the first period is over, the second one is the spendable batch
    QuotaBatch.objects.filter(pk=first.pk).update(expires_at=first.valid_from)
    QuotaBatch.objects.filter(pk=second.pk).update(valid_from=first.valid_from)
    assert ledger.check_quota(user.id, "PREMIUM")["can_use"] is True


def test_period_order_quantity_multiplies_the_span(user, premium, make_offer):
    offer = make_offer(items=[(premium, 1, "days", 30)])
    order = Order.objects.create(user=user)
    line = OrderItem.objects.create(order=order, offer=offer, quantity=2, price=0)
    batch = TransactionService.grant_offer(user.id, offer, order_item=line)[0]
    assert batch.expires_at - batch.valid_from == timedelta(days=60)


def test_two_lines_of_one_period_product_in_one_call_chain(user, premium, make_offer):
    offer = make_offer(items=[(premium, 1, "days", 10)])
    first, second = TransactionService.grant_many(user.id, [(offer, None), (offer, None)])
    assert second.valid_from == first.expires_at


def test_quantity_products_are_not_extended(user, tokens, make_offer):
    offer = make_offer(items=[(tokens, 5, "days", 30)])
    first = TransactionService.grant_offer(user.id, offer)[0]
    second = TransactionService.grant_offer(user.id, offer)[0]
    assert second.valid_from < first.expires_at
    assert TransactionService.get_balance(user.id, "TOKENS") == 10


def test_grant_many_grants_every_line(user, tokens, make_product, make_offer):
    gems = make_product("GEMS")
    batches = TransactionService.grant_many(
        user.id, [(make_offer(items=[(tokens, 2)]), None), (make_offer(items=[(gems, 3)]), None)],
        source="manual_grant")
    assert len(batches) == 2
    assert TransactionService.get_balance(user.id, "TOKENS") == 2
    assert TransactionService.get_balance(user.id, "GEMS") == 3
    assert TransactionService.check_ledger() == []


def test_offer_without_items_grants_nothing(user, make_offer):
    assert TransactionService.grant_offer(user.id, make_offer()) == []


def test_idempotent_grant_returns_the_first_batches(ledger, user, tokens, make_offer):
    offer = make_offer(items=[(tokens, 5)])
    first = ledger.grant_offer(user.id, offer, idempotency_key="bonus-1")
    again = ledger.grant_offer(user.id, offer, idempotency_key="bonus-1")
    assert [b.pk for b in again] == [b.pk for b in first]
    assert ledger.get_balance(user.id, "TOKENS") == 5


def test_grant_key_reused_for_another_offer_conflicts(user, tokens, make_offer):
    TransactionService.grant_offer(user.id, make_offer(items=[(tokens, 5)]), idempotency_key="k")
    with pytest.raises(IdempotencyConflict) as info:
        TransactionService.grant_offer(user.id, make_offer(items=[(tokens, 9)]),
                                       idempotency_key="k")
    assert info.value.code == "idempotency_conflict"
    assert TransactionService.get_balance(user.id, "TOKENS") == 5


@pytest.mark.parametrize("lines", [[("x",)], ["offer"], [(None, None, None)]])
def test_malformed_grant_lines_are_refused(user, lines):
    with pytest.raises(InvalidInput):
        TransactionService.grant_many(user.id, lines)
    assert ledger_rows() == 0


@pytest.mark.parametrize("kwargs", [{"order_item": "line"}, {"order_item": 5}, {"source": ""},
                                    {"source": None}, {"metadata": [1]}])
def test_bad_grant_arguments_are_refused(user, tokens, make_offer, kwargs):
    with pytest.raises(InvalidInput):
        TransactionService.grant_offer(user.id, make_offer(items=[(tokens, 1)]), **kwargs)
    assert ledger_rows() == 0
