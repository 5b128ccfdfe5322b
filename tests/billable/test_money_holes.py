"""Regression tests for the ways value could be minted, lost or misassigned (issue 12, items 1–9).

Each test reproduces a defect of 0.3.0 as its user would meet it and asserts the fixed
behaviour. Errors are matched by their stable ``code`` so the tests also run (and fail) against
the code from before the fixes.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from uuid import UUID

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from billable.exceptions import BillableError, CurrencyError, TrialAlreadyUsed
from billable.models import Offer, OfferItem, Product, QuotaBatch, Transaction
from billable.services import CustomerService, OrderService, TransactionService
from billable.services.trials import TrialService
from billable.signals import quota_consumed, transaction_created
from tests.billable.ledger_support import ledger_rows, make_batch

pytestmark = pytest.mark.django_db
T = TransactionService


def _code(call, *args, **kwargs) -> str:
    with pytest.raises(BillableError) as caught:
        call(*args, **kwargs)
    return caught.value.code


def _buy(user, offer, quantity=1):
    order = OrderService.create_order(user.id, [{"sku": offer.sku, "quantity": quantity}])
    OrderService.pay_order(order.pk, payment_id=f"pay-{order.pk}")
    return order


# -- 1. a currency must be a spendable quantity -------------------------------------------------


@pytest.mark.parametrize("kind", ["period", "unlimited"])
def test_an_entitlement_cannot_be_saved_as_a_currency(make_product, kind):
    with pytest.raises(ValidationError) as caught:
        make_product("GOLD", product_type=kind, is_currency=True)
    assert "is_currency" in caught.value.message_dict
    with pytest.raises(ValidationError):
        Product.objects.bulk_create([Product(product_key="GOLD2", name="g", product_type=kind,
                                             is_currency=True)])


@pytest.mark.parametrize("kind", ["period", "unlimited"])
def test_exchange_refuses_an_entitlement_currency_and_mints_nothing(user, make_product,
                                                                     make_offer, kind):
    gold = make_product("GOLD", product_type="quantity", is_currency=True)
    Product.objects.filter(pk=gold.pk).update(product_type=kind)  # a row from before the rule
    make_batch(user, gold, 10, expires_in_days=30)
    offer = make_offer("BIG", items=[(make_product("UNITS"), 100)], price="5",
                       currency="GOLD")
    before = ledger_rows()
    for _ in range(20):
        with pytest.raises(CurrencyError):
            T.exchange(user.id, offer=offer)
    assert T.get_balance(user.id, "UNITS") == 0
    assert ledger_rows() == before


# -- 2. trial → merge → trial ---------------------------------------------------------------------


def test_trial_merge_trial_cannot_mint_more_trials(make_user, make_product, make_offer):
    target, source = make_user(), make_user()
    trial = make_offer("TRIAL", items=[(make_product("T"), 10)], price="0")
    TrialService.claim_trial(target.id, trial.sku)
    for _round in range(3):
        try:
            TrialService.claim_trial(source.id, trial.sku)
        except TrialAlreadyUsed:
            pass
        CustomerService.merge_customers(target.id, source.id)
    # Two accounts, two trials at most — never a third one through the emptied source.
    assert T.get_balance(target.id, "T") == 20
    with pytest.raises(TrialAlreadyUsed):
        TrialService.claim_trial(source.id, trial.sku)


def test_merge_marks_every_identity_of_the_customer_as_trial_used(make_user, make_product,
                                                                  make_offer):
    from billable.models import ExternalIdentity

    target, source = make_user(), make_user()
    ExternalIdentity.objects.create(provider="telegram", external_id="111", user=target)
    ExternalIdentity.objects.create(provider="email", external_id="s@example.com", user=source)
    trial = make_offer("TRIAL", items=[(make_product("T"), 1)], price="0")
    TrialService.claim_trial(source.id, trial.sku)
    CustomerService.merge_customers(target.id, source.id)
    assert TrialService.is_eligible({"telegram": "111"}) is False
    assert TrialService.is_eligible({"email": "s@example.com"}) is False
    assert TrialService.is_eligible({}, user_id=target.id) is False
    assert TrialService.is_eligible({}, user_id=source.id) is False


# -- 4. a paid order grants what was ordered ------------------------------------------------------


def test_payment_grants_the_order_as_created_not_the_edited_offer(user, make_product, make_offer):
    tokens, premium = make_product("TOKENS"), make_product("PREMIUM", product_type="period")
    offer = make_offer("PACK", items=[(tokens, 10), (premium, 1, "days", 30)], price="5.00")
    order = OrderService.create_order(user.id, [{"sku": "pack", "quantity": 1}])
    OfferItem.objects.filter(offer=offer, product=tokens).update(quantity=1000)
    OfferItem.objects.filter(offer=offer, product=premium).update(period_value=365)
    OfferItem.objects.create(offer=offer, product=make_product("EXTRA"), quantity=7)
    OrderService.pay_order(order.pk, payment_id="p1")
    assert T.get_balance(user.id, "TOKENS") == 10
    assert T.get_balance(user.id, "EXTRA") == 0
    period = QuotaBatch.objects.get(product=premium)
    assert period.expires_at - period.valid_from == timedelta(days=30)
    assert order.items.get().price == Decimal("5.00")


def test_the_order_admin_shows_what_each_line_grants_escaped(admin_client, user, make_product,
                                                             make_offer):
    from django.urls import reverse

    make_offer("PACK", items=[(make_product("<B>"), 10),
                              (make_product("PREMIUM", product_type="period"), 1, "days", 30)])
    order = OrderService.create_order(user.id, [{"sku": "pack", "quantity": 2}])
    page = admin_client.get(reverse("admin:billable_order_change", args=[order.pk]))
    text = page.content.decode()
    assert "10 × &lt;B&gt;; 1 × PREMIUM for 30 days" in text


def test_pending_lines_get_a_snapshot_when_migrating(user, make_product, make_offer):
    from importlib import import_module

    from django.apps import apps

    from billable.models import Order, OrderItem

    offer = make_offer("PACK", items=[(make_product("TOKENS"), 10)], price="5")
    pending = Order.objects.create(user=user, status="pending")
    paid = Order.objects.create(user=user, status="paid")
    lines = [OrderItem.objects.create(order=o, offer=offer, quantity=1, price=5)
             for o in (pending, paid)]
    migration = import_module("billable.migrations.0005_order_item_snapshots")
    migration.snapshot_pending_lines(apps, None)
    for line in lines:
        line.refresh_from_db()
    assert lines[0].snapshot["items"][0]["quantity"] == 10
    assert lines[1].snapshot is None


# -- 5. refunding the first of two back-to-back periods -------------------------------------------


def test_refunding_the_first_of_two_chained_periods_moves_the_second_forward(user, make_product,
                                                                             make_offer):
    premium = make_product("PREMIUM", product_type="period")
    month = make_offer("MONTH", items=[(premium, 1, "days", 30)], price="5")
    first, second = _buy(user, month), _buy(user, month)
    OrderService.refund_paid_order(first.pk)
    now = timezone.now()
    assert T.check_quota(user.id, "PREMIUM")["can_use"] is True
    kept = QuotaBatch.objects.get(order_item__order=second)
    assert abs(kept.valid_from - now) < timedelta(seconds=30)
    assert kept.expires_at - kept.valid_from == timedelta(days=30)
    assert T.check_ledger() == []


def test_refunding_the_queued_period_keeps_the_running_one(user, make_product, make_offer):
    premium = make_product("PREMIUM", product_type="period")
    month = make_offer("MONTH", items=[(premium, 1, "days", 30)], price="5")
    first, second = _buy(user, month), _buy(user, month)
    before = QuotaBatch.objects.get(order_item__order=first)
    OrderService.refund_paid_order(second.pk)
    after = QuotaBatch.objects.get(order_item__order=first)
    assert (after.valid_from, after.expires_at) == (before.valid_from, before.expires_at)
    assert T.check_quota(user.id, "PREMIUM")["can_use"] is True


# -- 6. offers without items ----------------------------------------------------------------------


def test_an_offer_without_items_cannot_be_ordered_exchanged_or_claimed(user, make_product,
                                                                      make_offer):
    coins = make_product("COINS", is_currency=True)
    make_batch(user, coins, 50)
    make_offer("EMPTY", price="5", currency="COINS")
    make_offer("EMPTY_FREE", price="0")
    assert _code(OrderService.create_order, user.id, [{"sku": "EMPTY"}]) == "offer_has_no_items"
    assert _code(T.exchange, user.id, offer_id="EMPTY") == "offer_has_no_items"
    assert _code(TrialService.claim_trial, user.id, "EMPTY_FREE") == "offer_has_no_items"
    assert T.get_balance(user.id, "COINS") == 50


# -- 7. prices are never rounded silently ---------------------------------------------------------


def test_a_price_with_more_digits_than_the_column_holds_is_refused(make_offer):
    with pytest.raises(ValidationError) as caught:
        Offer.objects.create(sku="ODD", name="odd", price=Decimal("9.999"))
    assert "price" in caught.value.message_dict
    with pytest.raises(ValidationError):
        Offer.objects.bulk_create([Offer(sku="ODD2", name="odd", price=Decimal("0.001"))])
    assert not Offer.objects.filter(sku__in=["ODD", "ODD2"]).exists()
    assert make_offer("EVEN", price="9.990").price == Decimal("9.99")


# -- 8. orders that can never be paid -------------------------------------------------------------


def test_an_order_whose_period_cannot_be_represented_is_refused(user, make_product, make_offer):
    premium = make_product("PREMIUM", product_type="period")
    make_offer("MONTH", items=[(premium, 1, "days", 30)], price="5")
    items = [{"sku": "MONTH", "quantity": 1_000_000}]
    assert _code(OrderService.create_order, user.id, items) == "invalid_amount"


def test_periods_chained_past_year_9999_are_clamped_not_crashing(user, make_product, make_offer):
    premium = make_product("PREMIUM", product_type="period")
    age = make_offer("AGE", items=[(premium, 1, "years", 1000)], price="5")
    for _ in range(9):
        _buy(user, age)
    latest = QuotaBatch.objects.order_by("-expires_at").first()
    assert latest is not None and latest.expires_at.year == 9999
    assert T.check_ledger() == []


# -- 9. signal payloads have one type -------------------------------------------------------------


def test_ledger_signals_carry_uuids_whatever_wrote_the_row(user, make_product, make_offer,
                                                           django_capture_on_commit_callbacks):
    coins = make_product("COINS", is_currency=True)
    make_batch(user, coins, 100)
    offer = make_offer("SWAP", items=[(make_product("UNITS"), 1)], price="2", currency="COINS")
    seen: list[Transaction] = []

    def receiver(sender, **kwargs):
        seen.append(kwargs.get("transaction") or kwargs["usage"])

    transaction_created.connect(receiver)
    quota_consumed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            T.consume_quota(user.id, "COINS", amount=3)
            T.exchange(user.id, offer=offer)
            T.commit_reservation(T.reserve_quota(user.id, "COINS", 4), 1)
            T.grant_offer(user.id, offer)
    finally:
        transaction_created.disconnect(receiver)
        quota_consumed.disconnect(receiver)
    assert len(seen) >= 8
    for row in seen:
        assert isinstance(row.id, UUID) and isinstance(row.quota_batch_id, UUID), row.__dict__

