"""Minimal cases found by the cross-feature state machine (test_money_state_machine.py).

Each test is the shrunk sequence of one defect, kept as a plain regression test.
"""

from __future__ import annotations

import pytest

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
