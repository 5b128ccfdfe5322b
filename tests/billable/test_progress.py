"""Progress of long commands: a bar on a terminal, periodic lines elsewhere, and a summary."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from billable.management import progress as progress_module
from billable.management.progress import Progress
from billable.models import Reservation
from tests.billable.ledger_support import make_batch


class Tty(StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_every_interval_when_not_on_a_terminal() -> None:
    stream, clock = StringIO(), Clock()
    with Progress(stream, total=4000, label="batches", interval=10, clock=clock) as progress:
        for _ in range(8):
            clock.now += 2.5
            progress.advance(500)
    assert stream.getvalue().splitlines() == ["batches: 2000/4000 (50%), 10.0 s",
                                              "batches: 4000/4000 (100%), 20.0 s"]


def test_a_short_run_off_a_terminal_prints_nothing() -> None:
    stream = StringIO()
    with Progress(stream, total=3, label="users") as progress:
        progress.advance(3)
    assert stream.getvalue() == ""


def test_a_bar_is_redrawn_in_place_on_a_terminal() -> None:
    stream, clock = Tty(), Clock()
    with Progress(stream, total=10, label="users", clock=clock) as progress:
        clock.now += 1
        progress.advance(5)
        progress.advance(5)  # within the redraw interval: not drawn until finish
    assert stream.getvalue() == ("\r[###############...............] 5/10 users"
                                 "\r[##############################] 10/10 users\n")


def test_an_unknown_total_counts_up() -> None:
    stream, clock = StringIO(), Clock()
    progress = Progress(stream, total=None, label="rows", interval=1, clock=clock)
    clock.now = 1.5
    progress.advance(7)
    assert stream.getvalue() == "rows: 7, 1.5 s\n"


@pytest.mark.django_db
@pytest.mark.parametrize(("command", "label"), [("billable_expire", "holds and batches"),
                                                ("billable_check_ledger", "batches"),
                                                ("migrate_identities", "users")])
def test_long_commands_report_progress_and_a_summary(
        monkeypatch: pytest.MonkeyPatch, user: Any, make_product: Any, command: str,
        label: str) -> None:
    monkeypatch.setattr(progress_module, "LINE_INTERVAL", 0.0)
    credits = make_product("CREDITS")
    for _ in range(3):
        make_batch(user, credits, 2, age_days=2, expires_in_days=-1)
    Reservation.objects.create(user=user, product=credits, amount=1,
                               expires_at=make_batch(user, credits, 1).created_at)
    args = ["username", "telegram"] if command == "migrate_identities" else []
    out, err = StringIO(), StringIO()

    call_command(command, *args, stdout=out, stderr=err)

    lines = err.getvalue().splitlines()
    assert lines and all(line.startswith(f"{label}: ") for line in lines)
    assert "(100%)" in lines[-1]
    summary = {"billable_expire": "Expired 3 batches. Released 1 expired hold.",
               "billable_check_ledger": "Ledger consistent: 4 batches checked.",
               "migrate_identities": "Done. Created: 1, skipped (already exist): 0."}
    assert out.getvalue().strip().splitlines()[-1] == summary[command]
