"""Management commands billable_expire and billable_check_ledger."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from billable.models import QuotaBatch
from billable.services import TransactionService
from tests.billable.ledger_support import make_batch

pytestmark = pytest.mark.django_db


@pytest.fixture
def credits(make_product):
    return make_product("CREDITS")


def run(*args):
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_expire_command_reports_the_count(user, credits):
    make_batch(user, credits, 3, age_days=2, expires_in_days=-1)
    make_batch(user, credits, 3, age_days=2, expires_in_days=-1)
    assert run("billable_expire")[0].strip() == "Expired 2 batches. Released 0 expired holds."
    assert run("billable_expire")[0].strip() == "Expired 0 batches. Released 0 expired holds."
    assert TransactionService.check_ledger() == []


def test_expire_command_for_one_user(user, make_user, credits):
    other = make_user()
    make_batch(user, credits, 3, age_days=2, expires_in_days=-1)
    make_batch(other, credits, 3, age_days=2, expires_in_days=-1)
    assert run("billable_expire", "--user", str(other.pk))[0].startswith("Expired 1 batch.")
    with pytest.raises(CommandError):
        run("billable_expire", "--user", "not-a-number")


def test_check_ledger_passes_on_a_consistent_ledger(user, credits):
    make_batch(user, credits, 5)
    TransactionService.consume_quota(user.id, "CREDITS", amount=2)
    assert run("billable_check_ledger")[0].strip() == "Ledger consistent: 1 batches checked."


def test_check_ledger_fails_on_a_tampered_batch(user, make_user, credits):
    batch = make_batch(user, credits, 5)
    other = make_user()
    make_batch(other, credits, 5)
    QuotaBatch.objects.filter(pk=batch.pk).update(remaining_quantity=4)
    with pytest.raises(CommandError, match="1 violation"):
        run("billable_check_ledger")
    assert run("billable_check_ledger", "--user", str(other.pk))[0].startswith(
        "Ledger consistent")


def test_check_ledger_reports_a_batch_without_credit(user, credits):
    make_batch(user, credits, 5, with_credit=False)
    problems = TransactionService.check_ledger(user.id)
    assert len(problems) == 1
    assert "credits 0 != initial 5" in problems[0]
