"""``billable_expire``: the expiry job (run it from cron or a scheduler, e.g. every minute).

Releases holds past their expiry, then moves past-due batches to ``EXPIRED`` with a DEBIT for
what was left — the same two steps, in the same order, as ``TransactionService.expire_batches``.
Reads never depend on this job (they apply the spendability rule themselves); it keeps the
ledger and the batch states tidy. Progress goes to stderr, the summary to stdout.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from billable import metrics
from billable.exceptions import BillableError
from billable.ledger import closing, holds
from billable.management.outages import outage_is_command_error
from billable.management.progress import command_progress
from billable.models import QuotaBatch, Reservation
from billable.validation import coerce_user_id


def _plural(count: int, word: str, plural: str) -> str:
    return f"{count} {word if count == 1 else plural}"


class Command(BaseCommand):
    help = "Expire past-due quota batches and release expired holds."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", dest="user_id", default=None,
                            help="Only this user's batches and holds.")

    @outage_is_command_error
    def handle(self, *args: Any, **options: Any) -> None:
        try:
            uid = coerce_user_id(options["user_id"]) if options["user_id"] is not None else None
            released, expired = self._expire(uid)
        except BillableError as exc:
            raise CommandError(exc.message) from exc
        metrics.record_expiry(holds=released, batches=expired)
        self.stdout.write(f"Expired {_plural(expired, 'batch', 'batches')}. Released "
                          f"{_plural(released, 'expired hold', 'expired holds')}.")

    def _expire(self, user_id: Any) -> tuple[int, int]:
        now = timezone.now()
        due_holds = Reservation.objects.filter(state=Reservation.State.HELD, expires_at__lte=now)
        due_batches = QuotaBatch.objects.filter(state=QuotaBatch.State.ACTIVE,
                                                expires_at__lte=now)
        if user_id is not None:
            due_holds, due_batches = (due_holds.filter(user_id=user_id),
                                      due_batches.filter(user_id=user_id))
        total = due_holds.count() + due_batches.count()
        with command_progress(self, total=total, label="holds and batches") as progress:
            released = holds.release_expired(user_id=user_id, progress=progress.advance)
            expired = closing.expire_due(user_id=user_id, progress=progress.advance)
        return released, expired
