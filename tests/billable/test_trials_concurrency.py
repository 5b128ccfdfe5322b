"""Concurrent trial claims for one identity grant exactly once (PostgreSQL, real threads)."""

from __future__ import annotations

import pytest

from billable.exceptions import TrialAlreadyUsed
from billable.models import QuotaBatch, TrialHistory
from billable.services.trials import TrialService
from tests.helpers import requires_postgres, run_in_threads

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


def test_six_concurrent_claims_for_one_identity_grant_once(make_user, make_product, make_offer):
    predictions = make_product("PREDICTIONS")
    trial = make_offer("OFF_WELCOME_TRIAL", items=[(predictions, 3)], price="0")
    users = [make_user() for _ in range(6)]

    results = run_in_threads(6, lambda i: TrialService.claim_trial(
        users[i].id, trial.sku, identities={"telegram": "777"}))

    winners = [r for r in results if isinstance(r, list)]
    assert len(winners) == 1, results
    assert sum(isinstance(r, TrialAlreadyUsed) for r in results) == 5
    assert QuotaBatch.objects.count() == 1
    assert TrialHistory.objects.filter(identity_type="telegram").count() == 1


def test_six_concurrent_claims_by_one_account_grant_once(user, make_product, make_offer):
    predictions = make_product("PREDICTIONS")
    trial = make_offer("OFF_WELCOME_TRIAL", items=[(predictions, 3)], price="0")

    results = run_in_threads(6, lambda i: TrialService.claim_trial(user.id, trial.sku))

    assert sum(isinstance(r, list) for r in results) == 1, results
    assert QuotaBatch.objects.filter(user=user).count() == 1
