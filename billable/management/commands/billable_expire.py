"""``billable_expire``: the expiry job (run it from cron or a scheduler, e.g. every minute).

Releases holds past their expiry, then moves past-due batches to ``EXPIRED`` with a DEBIT for
what was left. Reads never depend on this job (they apply the spendability rule themselves);
it keeps the ledger and the batch states tidy.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billable.exceptions import BillableError
from billable.services import TransactionService


class Command(BaseCommand):
    help = "Expire past-due quota batches and release expired holds."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", dest="user_id", default=None,
                            help="Only this user's batches and holds.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = TransactionService.expire_batches(user_id=options["user_id"])
        except BillableError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Expired {count} batch{'es' if count != 1 else ''}.")
