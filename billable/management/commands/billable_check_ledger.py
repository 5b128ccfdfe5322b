"""``billable_check_ledger``: verify the ledger invariant for all users or one.

Exits with a non-zero status (``CommandError``) when any batch violates
``Σ CREDIT == initial`` or ``initial − Σ DEBIT − held == remaining``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billable.exceptions import BillableError
from billable.services import TransactionService
from billable.services.ledger_check import count_batches


class Command(BaseCommand):
    help = "Verify the ledger invariant; non-zero exit status on any violation."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", dest="user_id", default=None,
                            help="Only check this user's batches.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            problems = TransactionService.check_ledger(options["user_id"])
            checked = count_batches(options["user_id"])
        except BillableError as exc:
            raise CommandError(exc.message) from exc
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"Ledger check failed: {len(problems)} violation(s).")
        self.stdout.write(f"Ledger consistent: {checked} batches checked.")
