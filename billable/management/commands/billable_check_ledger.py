"""``billable_check_ledger``: verify the ledger invariant for all users or one.

Exits with a non-zero status (``CommandError``) when any batch violates
``Σ CREDIT == initial`` or ``initial − Σ DEBIT − held == remaining``. Progress (one step per
batch) goes to stderr, the violations to stderr, the summary to stdout.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billable.exceptions import BillableError
from billable.ledger.audit import check_ledger, count_batches
from billable.management.outages import outage_is_command_error
from billable.management.progress import command_progress
from billable.validation import coerce_user_id


class Command(BaseCommand):
    help = "Verify the ledger invariant; non-zero exit status on any violation."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", dest="user_id", default=None,
                            help="Only check this user's batches.")

    @outage_is_command_error
    def handle(self, *args: Any, **options: Any) -> None:
        try:
            uid = coerce_user_id(options["user_id"]) if options["user_id"] is not None else None
            checked = count_batches(user_id=uid)
            with command_progress(self, total=checked, label="batches") as progress:
                problems = check_ledger(user_id=uid, progress=progress.advance)
        except BillableError as exc:
            raise CommandError(exc.message) from exc
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"Ledger check failed: {len(problems)} violation(s) in "
                               f"{checked} batches.")
        self.stdout.write(f"Ledger consistent: {checked} batches checked.")
