"""TrialService: free offers only, once per identity, atomic claim + grant + record."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from billable.exceptions import InvalidInput, OfferNotFound, TrialAlreadyUsed, UserNotFound
from billable.models import ExternalIdentity, QuotaBatch, Transaction, TrialHistory
from billable.services import TransactionService
from billable.services import trials as trials_module
from billable.services.trials import TrialService
from billable.signals import trial_activated

pytestmark = pytest.mark.django_db


@pytest.fixture
def predictions(make_product):
    return make_product("PREDICTIONS", name="Predictions")


@pytest.fixture
def trial(make_offer, predictions):
    return make_offer("OFF_WELCOME_TRIAL", items=[(predictions, 3)], price="0",
                      name="Welcome Trial")


def _claim(mode, *args, **kwargs):
    if mode == "sync":
        return TrialService.claim_trial(*args, **kwargs)
    return async_to_sync(TrialService.aclaim_trial)(*args, **kwargs)


def _hash_count(kind, value):
    return TrialHistory.objects.filter(
        identity_type=kind, identity_hash=TrialHistory.generate_identity_hash(value)).count()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_claim_grants_the_free_offer_and_records_identities(mode, user, trial):
    batches = _claim(mode, user.id, "off_welcome_trial", identities={"telegram": 5454776146},
                     metadata={"campaign": "w"})
    assert [b.initial_quantity for b in batches] == [3]
    assert TransactionService.get_balance(user.id, "PREDICTIONS") == 3
    credit = Transaction.objects.get(user=user)
    assert credit.action_type == "trial_activation"
    assert _hash_count("telegram", 5454776146) == 1
    assert _hash_count("user", str(user.id)) == 1
    assert TrialHistory.objects.get(identity_type="telegram").trial_plan_name == "Welcome Trial"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_second_claim_for_the_same_identity_is_refused(mode, user, make_user, trial):
    _claim(mode, user.id, trial.sku, identities={"telegram": "X1"})
    other = make_user()
    with pytest.raises(TrialAlreadyUsed) as info:
        _claim(mode, other.id, trial.sku, identities={"telegram": "x1 "})
    assert info.value.code == "trial_already_used"
    assert TransactionService.get_balance(other.id, "PREDICTIONS") == 0
    assert QuotaBatch.objects.count() == 1


def test_same_account_cannot_claim_twice_with_new_identities(user, trial):
    TrialService.claim_trial(user.id, trial.sku, identities={"telegram": "1"})
    with pytest.raises(TrialAlreadyUsed):
        TrialService.claim_trial(user.id, trial.sku, identities={"email": "a@b.c"})
    assert not TrialHistory.objects.filter(identity_type="email").exists()


def test_without_identities_the_users_own_identities_are_used(user, make_user, trial):
    ExternalIdentity.objects.create(user=user, provider="telegram", external_id="12345678")
    TrialService.claim_trial(user.id, trial.sku)
    assert _hash_count("telegram", "12345678") == 1
    assert TrialService.is_eligible({"telegram": "12345678"}) is False


def test_without_any_identity_the_account_itself_is_used(user, trial):
    TrialService.claim_trial(user.id, trial.sku)
    assert _hash_count("user", str(user.id)) == 1
    with pytest.raises(TrialAlreadyUsed):
        TrialService.claim_trial(user.id, trial.sku)
    assert TransactionService.get_balance(user.id, "PREDICTIONS") == 3


def test_only_free_offers_can_be_trials(user, make_offer, predictions):
    paid = make_offer("PAID", items=[(predictions, 3)], price="1")
    with pytest.raises(InvalidInput, match="free"):
        TrialService.claim_trial(user.id, paid.sku, identities={"telegram": "1"})
    assert not TrialHistory.objects.exists()
    assert not QuotaBatch.objects.exists()


def test_unknown_or_inactive_offer(user, make_offer, predictions):
    make_offer("OLD_TRIAL", items=[(predictions, 1)], price="0", is_active=False)
    for sku in ("OLD_TRIAL", "MISSING"):
        with pytest.raises(OfferNotFound):
            TrialService.claim_trial(user.id, sku)
    with pytest.raises(InvalidInput):
        TrialService.claim_trial(user.id, "  ")
    assert not TrialHistory.objects.exists()


def test_unknown_user_and_bad_identities(user, trial):
    with pytest.raises(UserNotFound):
        TrialService.claim_trial(999999, trial.sku)
    with pytest.raises(InvalidInput):
        TrialService.claim_trial(user.id, trial.sku, identities=["telegram"])
    with pytest.raises(InvalidInput):
        TrialService.claim_trial(user.id, trial.sku, metadata="x")
    assert not TrialHistory.objects.exists()


def test_failed_grant_records_nothing(user, trial, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("ledger down")

    monkeypatch.setattr(trials_module.granting, "grant_lines", broken)
    with pytest.raises(RuntimeError):
        TrialService.claim_trial(user.id, trial.sku, identities={"telegram": "9"})
    assert not TrialHistory.objects.exists()
    assert TrialService.is_eligible({"telegram": "9"}) is True


def test_is_eligible(user, trial):
    assert TrialService.is_eligible({"telegram": "1"}) is True
    assert TrialService.is_eligible(None) is True
    assert TrialService.is_eligible({}, user_id=user.id) is True
    TrialService.claim_trial(user.id, trial.sku, identities={"telegram": "1"})
    assert TrialService.is_eligible({"telegram": "1"}) is False
    assert TrialService.is_eligible({"telegram": "2"}) is True
    assert TrialService.is_eligible({"telegram": "2"}, user_id=user.id) is False
    assert async_to_sync(TrialService.ais_eligible)({"telegram": "1"}) is False


def test_trial_activated_after_commit(user, trial, django_capture_on_commit_callbacks):
    seen = []

    def receiver(sender, user_id, products, **kwargs):
        seen.append((user_id, products))

    trial_activated.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            TrialService.claim_trial(user.id, trial.sku)
    finally:
        trial_activated.disconnect(receiver)
    assert seen == [(user.id, ["Predictions"])]
