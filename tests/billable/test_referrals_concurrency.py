"""Opposite referral requests racing cannot both succeed (PostgreSQL, real threads)."""

from __future__ import annotations

import pytest

from billable.exceptions import ReferralError
from billable.models import Referral
from billable.services.referrals import ReferralService
from tests.helpers import requires_postgres, run_in_threads

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


def test_opposite_requests_make_one_referral(make_user):
    alice, bob = make_user(), make_user()
    pairs = [(alice.id, bob.id), (bob.id, alice.id)] * 3

    results = run_in_threads(6, lambda i: ReferralService.assign_referrer(*pairs[i]))

    assert all(isinstance(r, (tuple, ReferralError)) for r in results), results
    assert sum(isinstance(r, tuple) and r[1] for r in results) == 1
    assert Referral.objects.count() == 1


def test_competing_referrers_for_one_referee(make_user):
    referee = make_user()
    referrers = [make_user() for _ in range(6)]

    results = run_in_threads(6, lambda i: ReferralService.assign_referrer(referrers[i].id,
                                                                          referee.id))

    assert sum(isinstance(r, tuple) for r in results) == 1, results
    assert sum(isinstance(r, ReferralError) for r in results) == 5
    assert Referral.objects.filter(referee=referee).count() == 1
