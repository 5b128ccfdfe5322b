"""Peer acceptance suite (black box): gifts, referrals and alerts, from docs/growth.md and SPEC."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from billable.exceptions import (
    BillableError,
    GiftAlreadyClaimed,
    GiftExpired,
    GiftOwn,
    ReferralError,
)
from billable.growth.alerts import AlertService
from billable.growth.gifts import GiftService
from billable.models import (
    AlertNotice,
    ExternalIdentity,
    Gift,
    ProductAlert,
    QuotaBatch,
    Referral,
    Transaction,
)
from billable.services import OrderService, TransactionService
from billable.services.referrals import ReferralService
from billable.signals import gift_claimed
from tests.helpers import requires_postgres, run_in_threads

pytestmark = pytest.mark.django_db

Shop = dict[str, Any]


def assert_ledger_consistent() -> None:
    assert TransactionService.check_ledger() == []


# --- gifts -------------------------------------------------------------------------------------


def test_gift_is_paid_without_granting_and_claimed_exactly_once(
        shop: Shop, make_user: Callable[..., Any], paid_gift: Callable[..., Any],
        django_capture_on_commit_callbacks: Any) -> None:
    buyer, friend, late = make_user(), make_user(), make_user()
    heard: list[dict[str, Any]] = []
    gift_claimed.connect(lambda sender, **kw: heard.append(kw), weak=False,
                         dispatch_uid="peer2-gift")
    try:
        gift = paid_gift(buyer)
        assert gift.status == "ready"
        assert TransactionService.get_balance(buyer.pk, "credits") == 0
        with pytest.raises(GiftOwn) as own:
            GiftService.claim(gift.token, user_id=buyer.pk)
        assert own.value.code == "gift_own"
        with django_capture_on_commit_callbacks(execute=True):
            GiftService.claim(gift.token, user_id=friend.pk)
        assert TransactionService.get_balance(friend.pk, "credits") == 10
        rows = Transaction.objects.count()
        with pytest.raises(GiftAlreadyClaimed) as again:
            GiftService.claim(gift.token, user_id=late.pk)
        assert again.value.code == "gift_already_claimed"
        with pytest.raises(GiftAlreadyClaimed):
            GiftService.claim(gift.token, user_id=friend.pk)
        assert Transaction.objects.count() == rows
    finally:
        gift_claimed.disconnect(dispatch_uid="peer2-gift")
    assert [(h["buyer_id"], h["claimer_id"]) for h in heard] == [(buyer.pk, friend.pk)]
    assert_ledger_consistent()


def test_refunding_a_claimed_gift_marks_it_refunded(
        shop: Shop, make_user: Callable[..., Any], paid_gift: Callable[..., Any],
        django_capture_on_commit_callbacks: Any) -> None:
    gift = paid_gift(make_user())
    friend = make_user()
    GiftService.claim(gift.token, user_id=friend.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert OrderService.refund_order(gift.order_id) is True
    assert TransactionService.get_balance(friend.pk, "credits") == 0
    refunded = Gift.objects.get(pk=gift.pk)
    assert (refunded.status, refunded.claimed_by_id) == ("refunded", friend.pk)
    with pytest.raises(GiftExpired):
        GiftService.claim(gift.token, user_id=make_user().pk)
    assert_ledger_consistent()


@pytest.mark.parametrize("token", ["", "nope", "a\x00b", "x" * 10_000, None, 12, ["t"]])
def test_unknown_or_garbled_gift_token_is_gift_unknown(shop: Shop, make_user: Callable[..., Any],
                                                       paid_gift: Callable[..., Any],
                                                       token: Any) -> None:
    paid_gift(make_user())
    with pytest.raises(BillableError) as caught:
        GiftService.claim(token, user_id=make_user().pk)
    assert caught.value.code in {"gift_unknown", "invalid_input"}
    with pytest.raises(BillableError):
        GiftService.get_gift(token)
    assert QuotaBatch.objects.count() == 0


@pytest.mark.parametrize("sku", ["NO_SUCH", "", None, "a\x00b", 10**30])
def test_gift_of_an_unknown_offer_is_refused(shop: Shop, make_user: Callable[..., Any],
                                             sku: Any) -> None:
    with pytest.raises(BillableError):
        GiftService.create_gift(make_user().pk, sku)
    assert Gift.objects.count() == 0


@pytest.mark.parametrize("user_id", [None, "abc", 10**30, -5, 999_999_999])
def test_gift_claim_by_a_bad_user_id_is_refused(shop: Shop, make_user: Callable[..., Any],
                                                paid_gift: Callable[..., Any],
                                                user_id: Any) -> None:
    gift = paid_gift(make_user())
    with pytest.raises(BillableError):
        GiftService.claim(gift.token, user_id=user_id)
    assert Gift.objects.get(pk=gift.pk).status == "ready"
    with pytest.raises(BillableError):
        GiftService.create_gift(user_id, "PACK_10")
    assert Gift.objects.count() == 1


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_of_one_gift_grant_once(shop: Shop, make_user: Callable[..., Any],
                                                  paid_gift: Callable[..., Any]) -> None:
    gift = paid_gift(make_user())
    claimers = [make_user().pk for _ in range(8)]
    results = run_in_threads(8, lambda i: GiftService.claim(gift.token, user_id=claimers[i]))
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 1
    assert all(isinstance(r, GiftAlreadyClaimed) for r in results if r not in won), results
    assert QuotaBatch.objects.count() == 1
    assert_ledger_consistent()


# --- referrals ---------------------------------------------------------------------------------


def test_referral_is_assigned_once_and_its_bonus_claimed_once(make_user: Callable[..., Any]
                                                              ) -> None:
    referrer, referee = make_user(), make_user()
    referral, created = ReferralService.assign_referrer(referrer.pk, referee.pk)
    assert created is True
    again, created_again = ReferralService.assign_referrer(referrer.pk, referee.pk)
    assert created_again is False and again.pk == referral.pk
    assert ReferralService.count_referrals(referrer.pk) == 1
    assert ReferralService.claim_bonus(referral.pk) is True
    assert ReferralService.claim_bonus(referral.pk) is False


def test_referral_refuses_self_and_a_second_referrer(make_user: Callable[..., Any]) -> None:
    first, second, referee = make_user(), make_user(), make_user()
    with pytest.raises(ReferralError):
        ReferralService.assign_referrer(referee.pk, referee.pk)
    ReferralService.assign_referrer(first.pk, referee.pk)
    with pytest.raises(BillableError):
        ReferralService.assign_referrer(second.pk, referee.pk)
    assert Referral.objects.filter(referee=referee).count() == 1


@pytest.mark.parametrize("referrer, referee", [(None, 1), ("x", 1), (10**30, 1), (1, 999_999)])
def test_referral_with_bad_ids_is_a_billable_error(make_user: Callable[..., Any], referrer: Any,
                                                   referee: Any) -> None:
    existing = make_user()
    referrer = existing.pk if referrer == 1 else referrer
    referee = existing.pk if referee == 1 else referee
    with pytest.raises(BillableError):
        ReferralService.assign_referrer(referrer, referee)
    assert Referral.objects.count() == 0


# --- alerts ------------------------------------------------------------------------------------


def spend(user: Any, amount: int) -> None:
    assert TransactionService.consume_quota(user.pk, "CREDITS", amount=amount)["success"]


def test_larger_of_units_and_percent_thresholds_wins(shop: Shop, user: Any) -> None:
    ProductAlert.objects.create(product=shop["credits"], low_balance_units=1,
                                low_balance_percent=50)
    TransactionService.grant_offer(user.pk, shop["pack"])  # last grant 10: 50 % → 5
    spend(user, 5)
    assert AlertService.scan().low_balance == 1
    assert AlertNotice.objects.get().threshold == 5


def test_disabled_customer_notice_is_recorded_but_skipped(shop: Shop,
                                                           make_user: Callable[..., Any]) -> None:
    ProductAlert.objects.create(product=shop["credits"], low_balance_units=3)
    quiet, loud = make_user(), make_user()
    for number, customer in enumerate((quiet, loud), start=500):
        ExternalIdentity.objects.create(provider="telegram", external_id=str(number),
                                        user=customer)
        TransactionService.grant_offer(customer.pk, shop["pack"])
        spend(customer, 8)
    AlertService.set_enabled(quiet.pk, False)
    assert AlertService.is_enabled(quiet.pk) is False
    assert AlertService.scan().low_balance == 2
    claimed = AlertService.claim_notices(provider="telegram", limit=10)
    assert len(claimed) == 1
    assert AlertNotice.objects.get(user=quiet).delivery == "skipped"
    assert AlertNotice.objects.get(user=loud).delivery == "sent"
    assert AlertService.claim_notices(provider="telegram", limit=10) == []


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_scans_record_each_notice_once(shop: Shop,
                                                  make_user: Callable[..., Any]) -> None:
    from billable.signals import quota_low

    ProductAlert.objects.create(product=shop["credits"], low_balance_units=3)
    customers = [make_user() for _ in range(3)]
    for customer in customers:
        TransactionService.grant_offer(customer.pk, shop["pack"])
        spend(customer, 9)
    heard: list[Any] = []
    quota_low.connect(lambda sender, **kw: heard.append(kw["user_id"]), weak=False,
                      dispatch_uid="peer2-low")
    try:
        results = run_in_threads(6, lambda i: AlertService.scan())
    finally:
        quota_low.disconnect(dispatch_uid="peer2-low")
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(r.low_balance for r in results) == 3
    assert AlertNotice.objects.count() == 3
    assert sorted(heard) == sorted(c.pk for c in customers)


def test_gift_of_an_inactive_offer_is_refused(shop: Shop,
                                              make_user: Callable[..., Any]) -> None:
    shop["pack"].is_active = False
    shop["pack"].save()
    with pytest.raises(BillableError):
        GiftService.create_gift(make_user().pk, "PACK_10")
    assert Gift.objects.count() == 0


@pytest.mark.parametrize("user_id", [None, "x", 10**30, 999_999_999])
def test_opt_out_of_an_unknown_customer_is_user_not_found(user_id: Any) -> None:
    from billable.exceptions import UserNotFound
    from billable.models import NotificationPreference

    with pytest.raises(UserNotFound):
        AlertService.set_enabled(user_id, False)
    assert NotificationPreference.objects.count() == 0
