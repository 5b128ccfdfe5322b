"""The inbox table: redeliveries are no-ops, leases exclude, takeovers are flagged, dead letters
are re-queued."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from bot_kit.inbox import store
from bot_kit.models import InboxUpdate

pytestmark = pytest.mark.django_db

BOT = 42


def update(update_id: int) -> dict:
    return {"update_id": update_id, "message": {"message_id": 1, "date": 0,
                                                "chat": {"id": 1, "type": "private"}}}


def expire_leases() -> None:
    InboxUpdate.objects.update(available_at=timezone.now() - timedelta(seconds=1))


def test_a_redelivered_update_is_stored_once() -> None:
    assert store.store(BOT, update(1)) is True
    assert store.store(BOT, update(1)) is False
    assert store.store_many(BOT, [update(1), update(2)]) == 1
    assert store.store(43, update(1)) is True  # another bot, same update id
    row = InboxUpdate.objects.get(bot_id=BOT, update_id=1)
    assert (row.kind, row.state, row.attempts) == ("message", "pending", 0)


def test_a_leased_row_is_not_handed_out_twice_until_its_lease_ends() -> None:
    store.store(BOT, update(1))
    [first] = store.claim(BOT, lease=30)
    assert (first.attempts, first.takeover) == (1, False)
    assert store.claim(BOT, lease=30) == []
    assert store.renew([first.pk], first.token, lease=30) == {first.pk}
    assert store.renew([first.pk], "someone-else", lease=30) == set()

    expire_leases()  # the worker died: no renewal, no outcome
    [again] = store.claim(BOT, lease=30)
    assert (again.pk, again.attempts, again.takeover) == (first.pk, 2, True)
    assert store.renew([first.pk], first.token, lease=30) == set()  # the old lease is gone


def test_retry_schedules_the_row_and_dead_letters_it_on_request() -> None:
    store.store(BOT, update(1))
    [row] = store.claim(BOT, lease=30)
    assert store.retry(row.pk, row.token, error="boom", delay=60, dead=False) == "pending"
    assert store.claim(BOT, lease=30) == []  # not due yet
    expire_leases()
    [row] = store.claim(BOT, lease=30)
    assert row.takeover is False  # a scheduled retry is not a takeover
    assert store.retry(row.pk, row.token, error="boom", delay=1, dead=True) == "dead"
    expire_leases()
    assert store.claim(BOT, lease=30) == []

    assert store.requeue([row.pk]) == 1
    [back] = store.claim(BOT, lease=30)
    assert (back.pk, back.attempts) == (row.pk, 1)
    assert InboxUpdate.objects.get(pk=row.pk).last_error == "boom"


def test_finish_is_idempotent_and_purge_keeps_recent_rows() -> None:
    store.store(BOT, update(1))
    [row] = store.claim(BOT, lease=30)
    store.finish(row.pk)
    store.finish(row.pk)
    assert InboxUpdate.objects.get(pk=row.pk).state == "done"
    assert store.oldest_pending_age() is None
    assert store.purge_done(older_than=timedelta(days=2)) == 0
    InboxUpdate.objects.update(done_at=timezone.now() - timedelta(days=3))
    assert store.purge_done(older_than=timedelta(days=2)) == 1


def test_release_gives_rows_back_at_once() -> None:
    store.store_many(BOT, [update(1), update(2)])
    rows = store.claim(BOT, lease=300, limit=5)
    assert len(rows) == 2
    assert store.release([r.pk for r in rows], rows[0].token) == 2
    assert len(store.claim(BOT, lease=300, limit=5)) == 2
    assert store.oldest_pending_age() is not None
