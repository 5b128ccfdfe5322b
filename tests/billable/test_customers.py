"""CustomerService.merge_customers: moves everything, resolves conflicts, keeps the ledger sound."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from billable.exceptions import IdentityConflict, MergeError, UserNotFound
from billable.models import (
    CustomerMerge,
    ExternalIdentity,
    IdempotencyKey,
    Order,
    QuotaBatch,
    Referral,
    Transaction,
    TrialHistory,
)
from billable.services import CustomerService, OrderService, TransactionService
from billable.services.trials import TrialService
from billable.signals import customers_merged

pytestmark = pytest.mark.django_db


@pytest.fixture
def pair(make_user):
    return make_user(username="target_user"), make_user(username="source_user")


@pytest.fixture
def pack(make_product, make_offer):
    return make_offer("OFF_TEST", items=[(make_product("TEST_PROD"), 10)], price="10")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_merge_moves_orders_ledger_identities_and_referrals(mode, pair, pack, make_user):
    target, source = pair
    order = OrderService.create_order(source.id, [{"sku": pack.sku}])
    OrderService.process_payment(order.id, payment_id="PAY-1")
    TransactionService.consume_quota(source.id, "TEST_PROD", amount=3)
    ExternalIdentity.objects.create(user=source, provider="telegram", external_id="12345")
    referee = make_user()
    Referral.objects.create(referrer=source, referee=referee)

    merge = (CustomerService.merge_customers if mode == "sync"
             else async_to_sync(CustomerService.amerge_customers))
    stats = merge(target.id, source.id)

    assert stats == {"moved_orders": 1, "moved_batches": 1, "moved_transactions": 2,
                     "moved_identities": 1, "moved_referrals": 1}
    assert Order.objects.get().user_id == target.id
    assert QuotaBatch.objects.get().user_id == target.id
    assert set(Transaction.objects.values_list("user_id", flat=True)) == {target.id}
    assert ExternalIdentity.objects.get().user_id == target.id
    assert Referral.objects.filter(referrer=target, referee=referee).exists()
    assert TransactionService.get_balance(target.id, "TEST_PROD") == 7
    assert TransactionService.get_balance(source.id, "TEST_PROD") == 0
    assert TransactionService.check_ledger() == []
    record = CustomerMerge.objects.get()
    assert (record.target_user_id, record.source_user_id) == (target.id, source.id)
    assert record.stats["moved_transactions"] == 2


def test_merge_errors(pair):
    target, source = pair
    cases = [
        ((target.id, target.id), MergeError, "Target and source users must be different."),
        ((999999, source.id), UserNotFound, "Target user 999999 does not exist."),
        ((target.id, 999998), UserNotFound, "Source user 999998 does not exist."),
        (("abc", source.id), UserNotFound, "Target user abc does not exist."),
    ]
    for args, error, message in cases:
        with pytest.raises(error) as info:
            CustomerService.merge_customers(*args)
        assert str(info.value) == message


def test_identity_conflict_changes_nothing(pair, pack):
    target, source = pair
    ExternalIdentity.objects.create(user=target, provider="telegram", external_id="target_tg")
    ExternalIdentity.objects.create(user=source, provider="telegram", external_id="source_tg")
    OrderService.create_order(source.id, [{"sku": pack.sku}])
    with pytest.raises(IdentityConflict) as info:
        CustomerService.merge_customers(target.id, source.id)
    assert str(info.value) == ("Identity conflict: both users have different external_ids for "
                               "provider telegram.")
    assert Order.objects.get().user_id == source.id
    assert ExternalIdentity.objects.get(external_id="source_tg").user_id == source.id


def test_identities_of_other_providers_move(pair):
    target, source = pair
    ExternalIdentity.objects.create(user=target, provider="telegram", external_id="1")
    ExternalIdentity.objects.create(user=source, provider="email", external_id="a@b.c")
    assert CustomerService.merge_customers(target.id, source.id)["moved_identities"] == 1
    assert ExternalIdentity.objects.filter(user=target).count() == 2


def test_self_referral_is_resolved(pair):
    target, source = pair
    Referral.objects.create(referrer=source, referee=target)
    stats = CustomerService.merge_customers(target.id, source.id)
    assert stats["moved_referrals"] == 1
    assert not Referral.objects.exists()


def test_duplicate_referrer_keeps_the_targets(pair, make_user):
    target, source = pair
    first, second = make_user(), make_user()
    Referral.objects.create(referrer=first, referee=target)
    Referral.objects.create(referrer=second, referee=source)
    CustomerService.merge_customers(target.id, source.id)
    assert list(Referral.objects.values_list("referrer_id", "referee_id")) == [
        (first.id, target.id)]


def test_source_referrer_moves_when_target_has_none(pair, make_user):
    target, source = pair
    inviter = make_user()
    Referral.objects.create(referrer=inviter, referee=source)
    CustomerService.merge_customers(target.id, source.id)
    assert Referral.objects.get().referee_id == target.id


def test_cycle_created_by_the_merge_is_resolved(pair, make_user):
    target, source = pair
    friend = make_user()
    Referral.objects.create(referrer=target, referee=friend)
    Referral.objects.create(referrer=friend, referee=source)
    CustomerService.merge_customers(target.id, source.id)
    assert list(Referral.objects.values_list("referrer_id", "referee_id")) == [
        (target.id, friend.id)]


def test_idempotency_keys_are_copied_and_each_account_keeps_its_own(pair, pack):
    target, source = pair
    for user in pair:
        TransactionService.grant_offer(user.id, pack)
    TransactionService.consume_quota(target.id, "TEST_PROD", idempotency_key="k1")
    TransactionService.consume_quota(source.id, "TEST_PROD", idempotency_key="k1")
    TransactionService.consume_quota(source.id, "TEST_PROD", idempotency_key="k2")
    mine = IdempotencyKey.objects.get(user=target, key="k1").fingerprint
    CustomerService.merge_customers(target.id, source.id)
    assert sorted(IdempotencyKey.objects.filter(user=target).values_list("key", flat=True)) == [
        "k1", "k2"]
    assert IdempotencyKey.objects.get(user=target, key="k1").fingerprint == mine
    # the source keeps its keys, so a retry still addressed to it replays (docs/orders.md)
    assert sorted(IdempotencyKey.objects.filter(user=source).values_list("key", flat=True)) == [
        "k1", "k2"]
    assert TransactionService.check_ledger() == []


def test_reservations_move_with_the_batches(pair, pack):
    target, source = pair
    TransactionService.grant_offer(source.id, pack)
    hold = TransactionService.reserve_quota(source.id, "TEST_PROD", amount=4)
    CustomerService.merge_customers(target.id, source.id)
    TransactionService.commit_reservation(hold, amount=2)
    assert TransactionService.get_balance(target.id, "TEST_PROD") == 8
    assert TransactionService.check_ledger() == []


def test_after_a_merge_both_accounts_count_as_having_used_the_trial(pair, make_product,
                                                                    make_offer):
    target, source = pair
    trial = make_offer("TRIAL", items=[(make_product("T"), 1)], price="0")
    TrialService.claim_trial(source.id, trial.sku)
    CustomerService.merge_customers(target.id, source.id)
    assert TrialService.is_eligible({}, user_id=target.id) is False
    assert TrialService.is_eligible({}, user_id=source.id) is False
    assert TrialHistory.objects.filter(identity_type="user").count() == 2


def test_merge_keeps_the_claims_of_both_accounts(pair, make_product, make_offer):
    target, source = pair
    trial = make_offer("TRIAL", items=[(make_product("T"), 1)], price="0")
    TrialService.claim_trial(source.id, trial.sku)
    TrialService.claim_trial(target.id, trial.sku)
    CustomerService.merge_customers(target.id, source.id)
    assert TrialHistory.objects.filter(identity_type="user").count() == 2


def test_customers_merged_after_commit(pair, django_capture_on_commit_callbacks):
    target, source = pair
    seen = []

    def receiver(sender, target_user_id, source_user_id, **kwargs):
        seen.append((target_user_id, source_user_id))

    customers_merged.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            stats = CustomerService.merge_customers(target.id, source.id)
    finally:
        customers_merged.disconnect(receiver)
    assert seen == [(target.id, source.id)]
    assert stats["moved_orders"] == 0


def test_refused_merge_leaves_no_record(pair):
    target, _ = pair
    with pytest.raises(MergeError):
        CustomerService.merge_customers(target.id, target.id)
    assert not CustomerMerge.objects.exists()


def test_promo_uses_and_gifts_follow_the_merged_customer(pair, pack):
    """A once-per-customer code the source account used stays used by the merged customer (not
    only through identities that move); its redemptions and gifts move to the target."""
    from billable.exceptions import PromoAlreadyUsed
    from billable.growth.gifts import GiftService
    from billable.growth.promo import PromoService
    from billable.models import Gift, PromoCode, PromoRedemption

    target, source = pair
    PromoCode.objects.create(code="ONCE", offer=pack)
    PromoService.redeem("ONCE", user_id=source.pk)  # by account only: no external identity
    gift = GiftService.create_gift(source.pk, pack.sku)
    CustomerService.merge_customers(target.pk, source.pk)
    assert list(PromoRedemption.objects.values_list("user_id", flat=True)) == [target.pk]
    assert Gift.objects.get(pk=gift.pk).buyer_id == target.pk
    with pytest.raises(PromoAlreadyUsed):
        PromoService.redeem("ONCE", user_id=target.pk)
    with pytest.raises(PromoAlreadyUsed):  # the emptied source cannot use it again either
        PromoService.redeem("ONCE", user_id=source.pk)
    assert PromoRedemption.objects.count() == 1
