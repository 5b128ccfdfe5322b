"""ReferralService: one referrer per user, no self-referral, no cycle of two, bonus once."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from billable.exceptions import InvalidInput, NotFound, ReferralError, UserNotFound
from billable.models import Referral
from billable.services.referrals import ReferralService
from billable.signals import referral_attached

pytestmark = pytest.mark.django_db


def _assign(mode, *args, **kwargs):
    if mode == "sync":
        return ReferralService.assign_referrer(*args, **kwargs)
    return async_to_sync(ReferralService.aassign_referrer)(*args, **kwargs)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_assign_creates_then_returns_existing(mode, make_user):
    alice, bob = make_user(), make_user()
    referral, created = _assign(mode, alice.id, bob.id, metadata={"campaign": "w"})
    assert created is True
    assert (referral.referrer_id, referral.referee_id) == (alice.id, bob.id)
    assert referral.metadata == {"campaign": "w"}
    again, created_again = _assign(mode, alice.id, bob.id)
    assert (again.pk, created_again) == (referral.pk, False)
    assert Referral.objects.count() == 1


def test_self_referral_is_refused(make_user):
    alice = make_user()
    with pytest.raises(ReferralError, match="Referrer and referee cannot be same"):
        ReferralService.assign_referrer(alice.id, alice.id)


def test_second_referrer_is_refused(make_user):
    alice, bob, carol = make_user(), make_user(), make_user()
    ReferralService.assign_referrer(alice.id, carol.id)
    with pytest.raises(ReferralError, match="Relationship exists or invalid IDs"):
        ReferralService.assign_referrer(bob.id, carol.id)
    assert Referral.objects.get(referee=carol).referrer_id == alice.id


def test_cycle_of_two_is_refused(make_user):
    alice, bob = make_user(), make_user()
    ReferralService.assign_referrer(alice.id, bob.id)
    with pytest.raises(ReferralError, match="Relationship exists or invalid IDs"):
        ReferralService.assign_referrer(bob.id, alice.id)
    assert Referral.objects.count() == 1


def test_missing_users_and_bad_ids(make_user):
    alice = make_user()
    with pytest.raises(UserNotFound, match="Referrer user not found in database"):
        ReferralService.assign_referrer(999999, alice.id)
    with pytest.raises(UserNotFound, match="Referee user not found in database"):
        ReferralService.assign_referrer(alice.id, 999999)
    for bad in (None, "x", True, 0):
        with pytest.raises(ReferralError, match="Provide valid identifiers"):
            ReferralService.assign_referrer(bad, alice.id)
    with pytest.raises(InvalidInput):
        ReferralService.assign_referrer(alice.id, make_user().id, metadata=[1])
    assert not Referral.objects.exists()


def test_referral_attached_once_after_commit(make_user, django_capture_on_commit_callbacks):
    alice, bob = make_user(), make_user()
    seen = []

    def receiver(sender, referral, **kwargs):
        seen.append(referral.pk)

    referral_attached.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            referral, _ = ReferralService.assign_referrer(alice.id, bob.id)
            ReferralService.assign_referrer(alice.id, bob.id)
    finally:
        referral_attached.disconnect(receiver)
    assert seen == [referral.pk]


def test_count_referrals(make_user):
    alice = make_user()
    for _ in range(3):
        ReferralService.assign_referrer(alice.id, make_user().id)
    assert ReferralService.count_referrals(alice.id) == 3
    assert async_to_sync(ReferralService.acount_referrals)(alice.id) == 3
    assert ReferralService.count_referrals("nope") == 0


def test_claim_bonus_once(make_user):
    referral, _ = ReferralService.assign_referrer(make_user().id, make_user().id)
    assert ReferralService.claim_bonus(referral.pk) is True
    assert async_to_sync(ReferralService.aclaim_bonus)(referral.pk) is False
    referral.refresh_from_db()
    assert referral.bonus_granted is True and referral.bonus_granted_at is not None
    with pytest.raises(NotFound):
        ReferralService.claim_bonus(999999)
