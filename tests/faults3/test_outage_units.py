"""The classification behind the 503s and the job commands' outage handling, without a
server: which database errors are outages, what the API answers, what a command prints, how
a ``--loop`` pass survives."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from django.core.management.base import CommandError
from django.db import IntegrityError, InterfaceError, OperationalError

from billable.api.errors import to_response
from billable.exceptions import DatabaseBusy, DatabaseUnavailable
from billable.ledger.retry import outage, retrying
from billable.management.outages import LoopGuard, outage_is_command_error
from tests.helpers import backend_independent

pytestmark = backend_independent


class DriverError(Exception):
    def __init__(self, text: str, sqlstate: str | None = None) -> None:
        super().__init__(text)
        self.sqlstate = sqlstate


def django_error(kind: type[Exception], text: str, sqlstate: str | None = None) -> Exception:
    """A Django database error wrapping a driver error, as Django raises them."""
    try:
        try:
            raise DriverError(text, sqlstate)
        except DriverError as cause:
            raise kind(text) from cause
    except kind as exc:
        return exc


@pytest.mark.parametrize(("error", "expected"), [
    (django_error(OperationalError, "canceling statement due to lock timeout", "55P03"),
     DatabaseBusy),
    (django_error(OperationalError, "canceling statement due to statement timeout", "57014"),
     DatabaseBusy),
    (django_error(OperationalError, "deadlock detected", "40P01"), DatabaseBusy),
    (django_error(OperationalError, "terminating connection due to administrator command",
                  "57P01"), DatabaseUnavailable),
    (django_error(OperationalError, "couldn't get a connection after 10.00 sec"),
     DatabaseUnavailable),
    (django_error(InterfaceError, "connection already closed"), DatabaseUnavailable),
])
def test_outages_are_classified(error: Exception, expected: type[Exception]) -> None:
    assert isinstance(outage(error), expected)
    status, body = to_response(error).status_code, to_response(error).value
    assert status == 503 and body["data"]["error"] == expected.code


@pytest.mark.parametrize("error", [
    django_error(IntegrityError, "duplicate key value", "23505"),
    ValueError("a bug"),
])
def test_other_errors_are_not_outages_and_stay_500(error: Exception) -> None:
    assert outage(error) is None
    assert to_response(error).status_code == 500


def test_a_timeout_is_not_retried_and_becomes_database_busy() -> None:
    calls = []

    @retrying
    def write() -> None:
        calls.append(1)
        raise django_error(OperationalError, "canceling statement due to lock timeout", "55P03")

    with pytest.raises(DatabaseBusy):
        write()
    assert calls == [1]


def test_a_command_reports_an_outage_in_one_line_and_keeps_a_bug_traceback() -> None:
    @outage_is_command_error
    def cut(*args: Any) -> None:
        raise django_error(OperationalError, "server closed the connection unexpectedly\n"
                                             "\tThis probably means the server terminated")

    with pytest.raises(CommandError) as raised:
        cut()
    assert str(raised.value) == ("Database unavailable: server closed the connection "
                                 "unexpectedly. Work committed before it is kept; run the job "
                                 "again.")

    @outage_is_command_error
    def bug(*args: Any) -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        bug()


def test_a_loop_pass_survives_an_outage_logs_it_once_and_raises_a_bug(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("billable.management.outages.FIRST_PAUSE", 0.0)
    guard = LoopGuard("test loop", threading.Event())
    broken = django_error(OperationalError, "terminating connection")

    def fail() -> None:
        raise broken

    with caplog.at_level(logging.WARNING, logger="billable.jobs"):
        assert guard.run(fail) is None
        assert guard.run(fail) is None
        assert guard.run(lambda: 7) == 7
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["test loop: Database unavailable: terminating connection; retrying until "
                     "the database is back",
                     "test loop: the database is back after 2 failed passes"]
    with pytest.raises(ZeroDivisionError):
        guard.run(lambda: 1 / 0)
