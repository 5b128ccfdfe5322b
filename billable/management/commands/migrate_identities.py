"""``migrate_identities <field> <provider>``: create ExternalIdentity rows from a user field."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, transaction

from billable.exceptions import InvalidInput
from billable.management.progress import Progress, command_progress
from billable.models import ExternalIdentity
from billable.services.identities import MAX_EXTERNAL_ID_LENGTH, normalize_provider

CHUNK = 500


class Command(BaseCommand):
    """Copy a user-model field (e.g. ``chat_id``) into ``ExternalIdentity(provider, value)``.

    Idempotent: an existing ``(provider, external_id)`` is skipped, never re-linked. Users whose
    value is empty are ignored. ``--dry-run`` prints ``[DRY] ...`` per planned row and writes
    nothing; ``--limit N`` processes the first N users (by primary key). Progress goes to stderr
    (a bar on a terminal, a line every few seconds otherwise: ``billable.management.progress``).
    """

    help = "Create ExternalIdentity rows from a user model field (idempotent)."
    failed = False

    def run_from_argv(self, argv: list[str]) -> None:
        """From a shell, an unknown field also ends with exit status 1 (for scripts and cron).

        ``call_command`` keeps 0.2's behaviour: the message on stderr, no exception.
        """
        super().run_from_argv(argv)
        if self.failed:
            sys.exit(1)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("field", help="User model field holding the id, e.g. chat_id.")
        parser.add_argument("provider", help="ExternalIdentity provider, e.g. telegram.")
        parser.add_argument("--dry-run", action="store_true",
                            help="Print the plan without writing to the database.")
        parser.add_argument("--limit", type=int, default=0,
                            help="Process at most N users (0 = all).")

    def handle(self, *args: Any, **options: Any) -> None:
        field_name: str = options["field"]
        try:
            provider = normalize_provider(options["provider"])
        except InvalidInput as exc:
            raise CommandError(exc.message) from exc
        limit = int(options["limit"] or 0)
        if limit < 0:
            raise CommandError("--limit must be a positive number of users (0: all).")
        User = get_user_model()
        label = User._meta.label
        try:
            field = User._meta.get_field(field_name)
        except FieldDoesNotExist:
            field = None
        if not isinstance(field, models.Field) or not field.concrete or field.many_to_many:
            self.stderr.write(self.style.ERROR(f"Model {label} has no field '{field_name}'."))
            self.failed = True
            return
        queryset = User._default_manager.order_by("pk").values_list("pk", field.attname)
        if limit:
            queryset = queryset[:limit]
        with command_progress(self, total=queryset.count(), label="users") as progress:
            created, skipped = self._migrate(queryset.iterator(chunk_size=CHUNK), provider,
                                             dry_run=options["dry_run"], progress=progress)
        self.stdout.write(self.style.SUCCESS(
            f"Done. Created: {created}, skipped (already exist): {skipped}."))

    def _migrate(self, rows: Iterator[tuple[Any, Any]], provider: str, *, dry_run: bool,
                 progress: Progress) -> tuple[int, int]:
        created = skipped = 0
        chunk: list[tuple[Any, str]] = []
        seen: set[str] = set()
        for pk, value in rows:
            text = "" if value is None else str(value).strip()
            if text and len(text) <= MAX_EXTERNAL_ID_LENGTH:
                chunk.append((pk, text))
            if len(chunk) >= CHUNK:
                c, s = self._flush(chunk, provider, seen, dry_run=dry_run)
                created, skipped, chunk = created + c, skipped + s, []
            progress.advance()
        c, s = self._flush(chunk, provider, seen, dry_run=dry_run)
        return created + c, skipped + s

    def _flush(self, chunk: list[tuple[Any, str]], provider: str, seen: set[str], *,
               dry_run: bool) -> tuple[int, int]:
        if not chunk:
            return 0, 0
        existing = set(ExternalIdentity.objects.filter(
            provider=provider, external_id__in=[value for _, value in chunk],
        ).values_list("external_id", flat=True)) | seen
        planned = []
        for pk, value in chunk:
            if value in existing:
                continue
            existing.add(value)
            planned.append(ExternalIdentity(provider=provider, external_id=value, user_id=pk))
        seen.update(identity.external_id for identity in planned)
        if dry_run:
            for identity in planned:
                self.stdout.write(f"[DRY] Create identity provider={provider!r} "
                                  f"external_id={identity.external_id!r} "
                                  f"user_id={identity.user_id}")
        else:
            with transaction.atomic():
                ExternalIdentity.objects.bulk_create(planned)
        return len(planned), len(chunk) - len(planned)
