"""The last line of defence: transient database conflicts are retried, never raised raw."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import OperationalError, transaction

from billable.exceptions import DatabaseBusy
from billable.ledger import retry as transient
from billable.ledger import sql as statements
from billable.services import TransactionService
from tests.billable.ledger_support import make_batch

pytestmark = pytest.mark.django_db


class _Deadlock(Exception):
    sqlstate = "40P01"


def _deadlock() -> OperationalError:
    error = OperationalError("deadlock detected")
    error.__cause__ = _Deadlock()
    return error


def _flaky(monkeypatch: pytest.MonkeyPatch, failures: int) -> list[int]:
    """Make the statement that locks the batch raise a deadlock ``failures`` times, then work:
    the general path's lock or, on PostgreSQL, the single-statement take (one counter)."""
    calls = [0]

    def flaky(real: Any) -> Any:
        def statement(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] <= failures:
                raise _deadlock()
            return real(*args, **kwargs)
        return statement

    for name in ("lock_spendable_lots", "take_first"):
        monkeypatch.setattr(statements, name, flaky(getattr(statements, name)))
    monkeypatch.setattr(transient.time, "sleep", lambda seconds: None)
    return calls


@pytest.mark.parametrize("message, expected", [
    ("deadlock detected", False),
    ("database is locked", True),
    ("no such table", False),
])
def test_what_counts_as_transient(message, expected):
    assert transient.is_transient(OperationalError(message)) is expected
    assert transient.is_transient(_deadlock()) is True
    assert transient.is_transient(ValueError("database is locked")) is False


@pytest.mark.django_db(transaction=True)
def test_a_deadlock_victim_is_retried_and_succeeds(monkeypatch, user, make_product):
    make_batch(user, make_product("CREDITS"), 10)
    calls = _flaky(monkeypatch, failures=2)
    result = TransactionService.consume_quota(user.id, "CREDITS", amount=3)
    assert result["success"] is True and calls[0] == 3
    assert TransactionService.get_balance(user.id, "CREDITS") == 7
    assert TransactionService.check_ledger() == []


@pytest.mark.django_db(transaction=True)
def test_after_every_attempt_fails_the_caller_gets_database_busy(monkeypatch, user,
                                                                 make_product):
    make_batch(user, make_product("CREDITS"), 10)
    calls = _flaky(monkeypatch, failures=100)
    with pytest.raises(DatabaseBusy) as caught:
        TransactionService.consume_quota(user.id, "CREDITS", amount=3)
    assert caught.value.code == "database_busy"
    assert calls[0] == transient.ATTEMPTS
    assert TransactionService.get_balance(user.id, "CREDITS") == 10


def test_inside_the_callers_transaction_there_is_no_retry(monkeypatch, user, make_product):
    make_batch(user, make_product("CREDITS"), 10)
    calls = _flaky(monkeypatch, failures=1)
    with pytest.raises(DatabaseBusy), transaction.atomic():
        TransactionService.consume_quota(user.id, "CREDITS", amount=3)
    assert calls[0] == 1


def test_database_busy_is_a_503_envelope_in_the_api(monkeypatch, user, make_product):
    from django.test import Client

    make_batch(user, make_product("CREDITS"), 10)
    _flaky(monkeypatch, failures=100)
    response = Client().post(
        "/api/v1/billing/wallet/consume", {"user_id": user.id, "product_key": "CREDITS",
                                           "action_type": "usage"},
        content_type="application/json",
        headers={"Authorization": "Bearer test-token-0123456789abcdef"})
    assert response.status_code == 503
    assert response.json()["data"]["error"] == "database_busy"
