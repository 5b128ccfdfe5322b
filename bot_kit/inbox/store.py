"""The inbox table's operations: store, claim with a lease, renew, finish, retry, dead-letter.

Every write is one short transaction. ``store``/``store_many`` insert with ``ON CONFLICT DO
NOTHING`` on ``(bot_id, update_id)``, so a redelivered update is a no-op. ``claim`` picks due
rows with ``SELECT … FOR UPDATE SKIP LOCKED`` (PostgreSQL; on SQLite the database lock
serialises writers) and then moves them ahead with a conditional ``UPDATE`` that only succeeds
while the row is still due — so two workers can never hold the same row, on either database.
A claim is identified by a token; renewals and retries only touch a row still held under that
token. A row that was claimed before and whose lease ran out without an outcome is handed out
with ``takeover=True`` (its previous worker died or lost the database).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.db.models import F, Min
from django.utils import timezone

from bot_kit.models import InboxUpdate

PENDING, DONE, DEAD = (InboxUpdate.State.PENDING, InboxUpdate.State.DONE,
                       InboxUpdate.State.DEAD)
#: Update fields that are not the event itself.
_NOT_EVENTS = frozenset({"update_id"})


@dataclass(frozen=True)
class Claimed:
    """A leased inbox row: what a worker needs to process it."""

    pk: int
    bot_id: int
    update_id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    token: str
    takeover: bool
    created_at: datetime


def kind_of(payload: Mapping[str, Any]) -> str:
    """The update type (``message``, ``pre_checkout_query`` …) of a raw update."""
    return next((key for key in payload if key not in _NOT_EVENTS), "")[:40]


def _row(bot_id: int, payload: Mapping[str, Any], now: datetime) -> InboxUpdate:
    return InboxUpdate(bot_id=bot_id, update_id=int(payload["update_id"]),
                       kind=kind_of(payload), payload=dict(payload), available_at=now,
                       created_at=now)


def store_many(bot_id: int, payloads: Iterable[Mapping[str, Any]]) -> int:
    """Commit raw updates (duplicates ignored); returns how many were new."""
    now = timezone.now()
    rows = [_row(bot_id, payload, now) for payload in payloads]
    if not rows:
        return 0
    keys = [row.update_id for row in rows]
    with transaction.atomic():
        before = InboxUpdate.objects.filter(bot_id=bot_id, update_id__in=keys).count()
        InboxUpdate.objects.bulk_create(rows, ignore_conflicts=True)
    return len(set(keys)) - before


def store(bot_id: int, payload: Mapping[str, Any]) -> bool:
    """Commit one raw update; False when it was already stored (a redelivery)."""
    return store_many(bot_id, [payload]) == 1


async def astore_many(bot_id: int, payloads: Iterable[Mapping[str, Any]]) -> int:
    """Async twin of :func:`store_many`."""
    return await sync_to_async(store_many)(bot_id, list(payloads))


async def astore(bot_id: int, payload: Mapping[str, Any]) -> bool:
    """Async twin of :func:`store`."""
    return await sync_to_async(store)(bot_id, payload)


def new_token() -> str:
    return uuid.uuid4().hex


def claim(bot_id: int, *, lease: float, limit: int = 10, only: int | None = None,
          token: str | None = None) -> list[Claimed]:
    """Lease up to ``limit`` due rows of ``bot_id`` (oldest first) under one new token."""
    token = token or new_token()
    now = timezone.now()
    due = InboxUpdate.objects.filter(bot_id=bot_id, state=PENDING, available_at__lte=now)
    if only is not None:
        due = due.filter(pk=only)
    skip = connection.features.has_select_for_update_skip_locked
    with transaction.atomic():
        found = list(due.select_for_update(skip_locked=skip).order_by("available_at", "id")
                     .values_list("pk", "claimed_by")[:limit])
        if not found:
            return []
        earlier = dict(found)
        InboxUpdate.objects.filter(pk__in=earlier, state=PENDING, available_at__lte=now).update(
            claimed_by=token, available_at=now + timedelta(seconds=lease),
            attempts=F("attempts") + 1)
        rows = list(InboxUpdate.objects.filter(pk__in=earlier, claimed_by=token)
                    .order_by("created_at", "id"))
    return [Claimed(pk=r.pk, bot_id=r.bot_id, update_id=r.update_id, kind=r.kind,
                    payload=r.payload, attempts=r.attempts, token=token,
                    takeover=bool(earlier.get(r.pk)), created_at=r.created_at)
            for r in rows]


def renew(pks: Iterable[int], token: str, *, lease: float) -> set[int]:
    """Extend the lease of rows still held under ``token``; returns the pks renewed."""
    wanted = list(pks)
    if not wanted:
        return set()
    held = InboxUpdate.objects.filter(pk__in=wanted, claimed_by=token, state=PENDING)
    with transaction.atomic():
        kept = set(held.select_for_update().values_list("pk", flat=True))
        InboxUpdate.objects.filter(pk__in=kept).update(
            available_at=timezone.now() + timedelta(seconds=lease))
    return kept


def finish(pk: int, *, note: str = "") -> None:
    """Mark a row done (idempotent: every outcome of the update is already committed)."""
    InboxUpdate.objects.filter(pk=pk).exclude(state=DONE).update(
        state=DONE, done_at=timezone.now(), claimed_by="", last_error=note[:2000])


def retry(pk: int, token: str, *, error: str, delay: float, dead: bool) -> str:
    """Schedule another attempt after ``delay`` s — or dead-letter the row when ``dead``."""
    state = DEAD if dead else PENDING
    InboxUpdate.objects.filter(pk=pk, claimed_by=token, state=PENDING).update(
        state=state, claimed_by="", last_error=error[:2000],
        available_at=timezone.now() + timedelta(seconds=delay))
    return str(state)


def release(pks: Iterable[int], token: str) -> int:
    """Give rows back at once (a worker shutting down before it processed them)."""
    return InboxUpdate.objects.filter(pk__in=list(pks), claimed_by=token, state=PENDING).update(
        claimed_by="", available_at=timezone.now())


def requeue(pks: Iterable[int]) -> int:
    """Put dead (or pending) rows back in line with a fresh attempt count (the admin action)."""
    return InboxUpdate.objects.filter(pk__in=list(pks)).exclude(state=DONE).update(
        state=PENDING, attempts=0, claimed_by="", available_at=timezone.now())


def purge_done(*, older_than: timedelta) -> int:
    """Delete done rows older than ``older_than`` (keep it under a week: see docs/delivery)."""
    limit = timezone.now() - older_than
    deleted, _ = InboxUpdate.objects.filter(state=DONE, done_at__lt=limit).delete()
    return deleted


def oldest_pending_age(now: datetime | None = None) -> float | None:
    """Seconds since the oldest pending row was received, or ``None`` when there is none."""
    oldest = InboxUpdate.objects.filter(state=PENDING).aggregate(at=Min("created_at"))["at"]
    if oldest is None:
        return None
    return max(((now or timezone.now()) - oldest).total_seconds(), 0.0)


__all__ = [
    "Claimed",
    "astore",
    "astore_many",
    "claim",
    "finish",
    "kind_of",
    "new_token",
    "oldest_pending_age",
    "purge_done",
    "release",
    "renew",
    "requeue",
    "retry",
    "store",
    "store_many",
]
