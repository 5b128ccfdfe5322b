"""Minimal cases found by the cross-feature state machine (test_money_state_machine.py).

Each test is the shrunk sequence of one defect, kept as a plain regression test.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from billable.models import QuotaBatch, Transaction
from billable.services import CustomerService
from billable.services import TransactionService as T

pytestmark = pytest.mark.django_db


@pytest.fixture
def bonus(make_product, make_offer):
    return make_offer("BONUS_5", items=[(make_product("CREDITS"), 5)])


def test_a_keyed_grant_replayed_at_the_merged_away_account_grants_nothing(make_user, bonus):
    """A grant retried under its key after the account was merged away is a replay.

    The merge used to move the key to the target, so the source answered the retry as a new
    request and granted the units a second time (5 granted once, 10 in the merged wallets).
    """
    target, source = make_user(), make_user()
    first = T.grant_offer(source.pk, "BONUS_5", idempotency_key="bonus-1")
    CustomerService.merge_customers(target.pk, source.pk)

    again = T.grant_offer(source.pk, "BONUS_5", idempotency_key="bonus-1")

    assert [b.pk for b in again] == [b.pk for b in first]
    assert QuotaBatch.objects.count() == 1 and Transaction.objects.count() == 1
    assert T.get_balance(target.pk, "credits") == 5
    assert T.get_balance(source.pk, "credits") == 0
    # and under the target, where the merged customer now lives, it is a replay too
    assert [b.pk for b in T.grant_offer(target.pk, "BONUS_5", idempotency_key="bonus-1")] == [
        b.pk for b in first]
    assert T.check_ledger() == []


def test_a_keyed_consume_replayed_at_the_merged_away_account_charges_nothing(make_user, bonus):
    """A consume retried under its key at the emptied source answers the first consume; it
    is not a new charge (which would take the units again as soon as the source held any)."""
    target, source = make_user(), make_user()
    T.grant_offer(source.pk, "BONUS_5")
    first = T.consume_quota(source.pk, "credits", amount=2, idempotency_key="use-1")
    CustomerService.merge_customers(target.pk, source.pk)
    T.grant_offer(source.pk, "BONUS_5")  # the emptied account is used again

    again = T.consume_quota(source.pk, "credits", amount=2, idempotency_key="use-1")

    assert again["success"] and "idempotent" in again["message"], again
    assert again["usage_id"] == first["usage_id"]
    assert T.get_balance(source.pk, "credits") == 5
    assert T.get_balance(target.pk, "credits") == 3
    assert T.check_ledger() == []


@pytest.fixture
def month(make_product, make_offer):
    premium = make_product("PREMIUM", product_type="period")
    return make_offer("MONTH", items=[(premium, 1, "days", 30)], price="5")


def _access_end(user_pk):
    batches = QuotaBatch.objects.filter(user_id=user_pk, state="ACTIVE",
                                        product__product_key="PREMIUM")
    return max(b.expires_at for b in batches)


def test_a_merge_chains_both_subscriptions_instead_of_overlapping_them(make_user, month):
    """Two customers with 30 running days each are one customer with 60 days after the merge,
    as two purchases by one customer are (SPEC §3: a period bought while access runs extends
    it). The merge used to keep both periods side by side: 30 days of access for 60 paid."""
    target, source = make_user(), make_user()
    T.grant_offer(target.pk, "MONTH")
    T.grant_offer(source.pk, "MONTH")
    T.grant_offer(source.pk, "MONTH")  # the source had a second month queued
    now = timezone.now()

    CustomerService.merge_customers(target.pk, source.pk)

    assert abs(_access_end(target.pk) - (now + timedelta(days=90))) < timedelta(seconds=30)
    # no hole and no overlap: each period starts when the one before it ends
    periods = sorted(QuotaBatch.objects.filter(user_id=target.pk, state="ACTIVE"),
                     key=lambda b: b.valid_from)
    for before, after in itertools.pairwise(periods):
        assert after.valid_from == before.expires_at
    assert T.check_quota(target.pk, "PREMIUM")["can_use"]
    # the next purchase chains after all of it, and a refund still closes the gap
    T.grant_offer(target.pk, "MONTH")
    assert abs(_access_end(target.pk) - (now + timedelta(days=120))) < timedelta(seconds=30)
    assert T.check_ledger() == []


def test_a_merge_into_an_account_without_access_moves_nothing(make_user, month):
    target, source = make_user(), make_user()
    T.grant_offer(source.pk, "MONTH")
    before = list(QuotaBatch.objects.values_list("valid_from", "expires_at"))
    CustomerService.merge_customers(target.pk, source.pk)
    assert list(QuotaBatch.objects.values_list("valid_from", "expires_at")) == before


@pytest.mark.django_db(transaction=True)
def test_a_conflict_inside_a_nested_service_call_is_retried_by_the_outer_one(make_user,
                                                                               make_product,
                                                                               make_offer):
    """A gift claim (or a promo redemption, a trial) grants through ``grant_offer`` inside its
    own transaction. A deadlock or SQLite's "database is locked" met by that inner grant
    cannot be retried there, but the claim as a whole can: it is rolled back completely and
    run again. It used to fail with ``DatabaseBusy`` at the first conflict."""
    from unittest import mock

    from django.db import OperationalError

    from billable.growth.gifts import GiftService
    from billable.ledger import grants

    buyer, claimer = make_user(), make_user()
    make_offer("PACK", items=[(make_product("CREDITS"), 10)], price="5")
    gift = GiftService.create_gift(buyer.pk, "PACK")
    GiftService.pay_gift_order(gift.order_id, payment_id="g-1")
    real, calls = grants.grant_lines, []

    def conflict_once(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("database is locked")
        return real(**kwargs)

    with mock.patch.object(grants, "grant_lines", conflict_once):
        GiftService.claim(gift.token, user_id=claimer.pk)

    assert len(calls) == 2
    assert T.get_balance(claimer.pk, "credits") == 10
    assert T.check_ledger() == []


def test_merging_the_claimer_of_a_gift_into_its_buyer(make_user, make_product, make_offer):
    """One person, two accounts: one bought a gift, the other claimed it. Merging them used to
    fail on the gift's "not claimed by its buyer" CHECK with a raw IntegrityError; the merge
    now goes through and the gift keeps the account that claimed it."""
    from billable.growth.gifts import GiftService

    buyer, claimer = make_user(), make_user()
    make_offer("PACK", items=[(make_product("CREDITS"), 10)], price="5")
    gift = GiftService.create_gift(buyer.pk, "PACK")
    GiftService.pay_gift_order(gift.order_id, payment_id="g-1")
    GiftService.claim(gift.token, user_id=claimer.pk)

    CustomerService.merge_customers(buyer.pk, claimer.pk)

    gift.refresh_from_db()
    assert (gift.buyer_id, gift.claimed_by_id, gift.status) == (buyer.pk, claimer.pk, "claimed")
    assert T.get_balance(buyer.pk, "credits") == 10
    assert T.check_ledger() == []


def test_merging_the_buyer_of_a_gift_into_its_claimer(make_user, make_product, make_offer):
    from billable.growth.gifts import GiftService
    from billable.models import Gift

    buyer, claimer, other = make_user(), make_user(), make_user()
    make_offer("PACK", items=[(make_product("CREDITS"), 10)], price="5")
    claimed = GiftService.create_gift(buyer.pk, "PACK")
    GiftService.pay_gift_order(claimed.order_id, payment_id="g-1")
    GiftService.claim(claimed.token, user_id=claimer.pk)
    waiting = GiftService.create_gift(buyer.pk, "PACK")
    GiftService.pay_gift_order(waiting.order_id, payment_id="g-2")

    CustomerService.merge_customers(claimer.pk, buyer.pk)

    claimed.refresh_from_db()
    assert (claimed.buyer_id, claimed.claimed_by_id) == (buyer.pk, claimer.pk)
    assert Gift.objects.get(pk=waiting.pk).buyer_id == claimer.pk  # unclaimed: moves
    GiftService.claim(waiting.token, user_id=other.pk)
    assert T.get_balance(other.pk, "credits") == 10


def test_an_account_merged_away_takes_no_new_referral(make_user):
    """A merge that drops a referral (the referee merged into its referrer) used to leave the
    emptied account free to be referred again: a second referral of the same person, and a
    second ``claim_bonus() is True`` for the host to pay a bonus on."""
    from billable.exceptions import ReferralError
    from billable.models import Referral
    from billable.services.referrals import ReferralService

    referrer, referee, newcomer = make_user(), make_user(), make_user()
    referral, _ = ReferralService.assign_referrer(referrer.pk, referee.pk)
    assert ReferralService.claim_bonus(referral.pk) is True
    CustomerService.merge_customers(referrer.pk, referee.pk)  # the row would be a self-referral

    with pytest.raises(ReferralError):
        ReferralService.assign_referrer(referrer.pk, referee.pk)
    with pytest.raises(ReferralError):  # nor does it invite anyone: the customer lives on
        ReferralService.assign_referrer(referee.pk, newcomer.pk)
    assert not Referral.objects.exists()
    assert ReferralService.assign_referrer(referrer.pk, newcomer.pk)[1] is True
