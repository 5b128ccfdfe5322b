"""Holds: reserve → commit (all or part) / release, idempotency, expiry and the invariant."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billable.exceptions import (
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    InvalidInput,
    QuotaExhausted,
    ReservationNotFound,
    ReservationStateError,
)
from billable.models import QuotaBatch, Reservation, Transaction
from billable.services import TransactionService
from tests.billable.ledger_support import ledger, ledger_rows, make_batch
from tests.helpers import requires_postgres, run_in_threads

pytestmark = pytest.mark.django_db
__all__ = ["ledger"]


@pytest.fixture
def credits(make_product):
    return make_product("CREDITS")


def consistent() -> bool:
    return TransactionService.check_ledger() == []


def test_reserve_takes_units_without_a_ledger_row(ledger, user, credits):
    make_batch(user, credits, 10)
    before = ledger_rows()
    rid = ledger.reserve_quota(user.id, "credits", 4)
    assert isinstance(rid, str)
    assert ledger.get_balance(user.id, "CREDITS") == 6
    assert ledger_rows() == before
    assert Reservation.objects.get(pk=rid).state == "HELD"
    assert consistent()


def test_commit_all_writes_the_debits(ledger, user, credits):
    make_batch(user, credits, 3, age_days=2)
    make_batch(user, credits, 3, age_days=1)
    rid = ledger.reserve_quota(user.id, "CREDITS", 5, metadata={"job": "ai"},
                               action_type="ai_call")
    result = ledger.commit_reservation(rid)
    assert result["success"] is True
    assert result["usage_id"] == rid
    assert result["remaining"] == 1
    debits = Transaction.objects.filter(direction="DEBIT")
    assert sorted(d.amount for d in debits) == [2, 3]
    assert {d.action_type for d in debits} == {"ai_call"}
    assert all(d.metadata["job"] == "ai" for d in debits)
    assert consistent()


def test_partial_commit_returns_the_rest(ledger, user, credits):
    make_batch(user, credits, 10)
    rid = ledger.reserve_quota(user.id, "CREDITS", 6)
    result = ledger.commit_reservation(rid, 2)
    assert result["amount"] == 2
    assert result["remaining"] == 8
    assert Transaction.objects.filter(direction="DEBIT").get().amount == 2
    assert consistent()


def test_commit_and_release_are_idempotent(ledger, user, credits):
    make_batch(user, credits, 10)
    committed = ledger.reserve_quota(user.id, "CREDITS", 3)
    first = ledger.commit_reservation(committed)
    again = ledger.commit_reservation(committed)
    assert again["usage_id"] == first["usage_id"]
    assert "idempotent" in again["message"]
    released = ledger.reserve_quota(user.id, "CREDITS", 3)
    assert ledger.release_reservation(released) is True
    assert ledger.release_reservation(released) is True
    assert ledger.release_reservation(committed) is False
    assert ledger.get_balance(user.id, "CREDITS") == 7
    assert Transaction.objects.filter(direction="DEBIT").count() == 1
    assert consistent()


def test_commit_after_release_is_refused(user, credits):
    make_batch(user, credits, 10)
    rid = TransactionService.reserve_quota(user.id, "CREDITS", 3)
    TransactionService.release_reservation(rid)
    with pytest.raises(ReservationStateError):
        TransactionService.commit_reservation(rid)
    assert TransactionService.get_balance(user.id, "CREDITS") == 10


@pytest.mark.parametrize("amount", [0, -1, 1.5, "2", 7])
def test_commit_amount_must_fit_the_hold(user, credits, amount):
    make_batch(user, credits, 10)
    rid = TransactionService.reserve_quota(user.id, "CREDITS", 6)
    with pytest.raises(InvalidAmount):
        TransactionService.commit_reservation(rid, amount)
    assert Reservation.objects.get(pk=rid).state == "HELD"


def test_reserve_failures_raise_and_hold_nothing(ledger, user, credits):
    with pytest.raises(QuotaExhausted) as info:
        ledger.reserve_quota(user.id, "CREDITS", 1)
    assert info.value.message == "No active quota for CREDITS"
    make_batch(user, credits, 2)
    with pytest.raises(InsufficientFunds):
        ledger.reserve_quota(user.id, "CREDITS", 3)
    assert Reservation.objects.count() == 0
    assert ledger.get_balance(user.id, "CREDITS") == 2


@pytest.mark.parametrize("rid", ["nope", "00000000-0000-0000-0000-000000000000", None, 12])
def test_unknown_reservation_ids(rid):
    with pytest.raises(ReservationNotFound):
        TransactionService.commit_reservation(rid)
    with pytest.raises(ReservationNotFound):
        TransactionService.release_reservation(rid)


@pytest.mark.parametrize("ttl", [0, -5, "60", True])
def test_bad_ttl_is_refused(user, credits, ttl):
    make_batch(user, credits, 10)
    with pytest.raises(InvalidInput):
        TransactionService.reserve_quota(user.id, "CREDITS", ttl=ttl)


def test_reserve_idempotency(user, credits):
    make_batch(user, credits, 10)
    first = TransactionService.reserve_quota(user.id, "CREDITS", 2, idempotency_key="upd-1")
    again = TransactionService.reserve_quota(user.id, "CREDITS", 2, idempotency_key="upd-1")
    assert again == first
    assert TransactionService.get_balance(user.id, "CREDITS") == 8
    with pytest.raises(IdempotencyConflict):
        TransactionService.reserve_quota(user.id, "CREDITS", 3, idempotency_key="upd-1")


def test_expired_hold_is_released_by_the_expiry_job(ledger, user, credits):
    make_batch(user, credits, 10)
    rid = ledger.reserve_quota(user.id, "CREDITS", 4, ttl=timedelta(seconds=60))
    Reservation.objects.filter(pk=rid).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert ledger.expire_batches() == 0
    assert Reservation.objects.get(pk=rid).state == "EXPIRED"
    assert ledger.get_balance(user.id, "CREDITS") == 10
    assert consistent()


def test_commit_of_an_expired_hold_is_refused_even_before_the_job(user, credits):
    make_batch(user, credits, 10)
    rid = TransactionService.reserve_quota(user.id, "CREDITS", 4)
    Reservation.objects.filter(pk=rid).update(expires_at=timezone.now())
    with pytest.raises(ReservationStateError, match="expired"):
        TransactionService.commit_reservation(rid)
    assert Reservation.objects.get(pk=rid).state == "EXPIRED"
    assert TransactionService.get_balance(user.id, "CREDITS") == 10


def test_units_released_onto_an_expired_batch_are_written_off(user, credits):
    batch = make_batch(user, credits, 10, expires_in_days=1)
    rid = TransactionService.reserve_quota(user.id, "CREDITS", 4)
    QuotaBatch.objects.filter(pk=batch.pk).update(expires_at=timezone.now())
    assert TransactionService.expire_batches() == 1
    assert TransactionService.release_reservation(rid) is True
    batch.refresh_from_db()
    assert (batch.state, batch.remaining_quantity) == ("EXPIRED", 0)
    write_offs = Transaction.objects.filter(direction="DEBIT", action_type="expiration")
    assert sorted(t.amount for t in write_offs) == [4, 6]
    assert consistent()


def test_holds_on_entitlements_never_deplete(user, make_product):
    vip = make_product("VIP", product_type="unlimited")
    make_batch(user, vip, 1)
    rid = TransactionService.reserve_quota(user.id, "VIP", 3)
    assert TransactionService.get_balance(user.id, "VIP") == 1
    result = TransactionService.commit_reservation(rid)
    assert result["metadata"]["requested_amount"] == 3
    assert Transaction.objects.get(direction="DEBIT").amount == 0
    assert consistent()


def test_commit_reports_held_metadata_and_keeps_it_on_the_debits(user, credits):
    make_batch(user, credits, 5)
    rid = TransactionService.reserve_quota(user.id, "CREDITS", 2, metadata={"job": 7})
    result = TransactionService.commit_reservation(rid)
    # no key: None under the key consume_quota writes (its DEBIT metadata always has the key)
    expected = {"job": 7, "idempotency_key": None, "reservation_id": rid}
    assert result["metadata"] == expected
    debit = Transaction.objects.get(direction="DEBIT")
    assert str(debit.pk) == rid and debit.metadata == expected
    hold = Reservation.objects.get(pk=rid)
    assert (hold.state, hold.committed_amount, hold.settled_at is not None) == (
        "COMMITTED", 2, True)


@pytest.mark.parametrize("amount", [None, 3])
def test_a_committed_hold_debits_carry_its_idempotency_key_like_a_consume(user, credits,
                                                                          amount):
    """Before: the DEBIT of a committed hold had the reservation id but not the key the hold
    was placed with, unlike a consumption's DEBIT (same key name, same value)."""
    make_batch(user, credits, 3)
    make_batch(user, credits, 5)
    rid = TransactionService.reserve_quota(user.id, "CREDITS", 4, idempotency_key="job-42",
                                           metadata={"idempotency_key": "spoofed", "job": 1})
    assert Reservation.objects.get(pk=rid).idempotency_key == "job-42"
    result = TransactionService.commit_reservation(rid, amount)
    expected = {"job": 1, "idempotency_key": "job-42", "reservation_id": rid}
    assert result["metadata"] == expected
    debits = Transaction.objects.filter(direction="DEBIT")
    assert debits.count() == (1 if amount == 3 else 2)
    assert all(debit.metadata == expected for debit in debits)
    replay = TransactionService.commit_reservation(rid, amount)
    assert "idempotent" in replay["message"] and replay["metadata"] == expected
    TransactionService.consume_quota(user.id, "CREDITS", idempotency_key="use-1")
    consumed = Transaction.objects.get(direction="DEBIT", metadata__idempotency_key="use-1")
    assert consumed.metadata == {"idempotency_key": "use-1"}


def test_a_stale_settle_is_retried_and_replays(user, credits, monkeypatch):
    """A hold read as HELD but settled meanwhile (SQLite has no row locks) is not settled twice."""
    from dataclasses import replace

    from billable.ledger import holds

    make_batch(user, credits, 5)
    rid = TransactionService.reserve_quota(user.id, "CREDITS", 2)
    TransactionService.commit_reservation(rid)
    real_lock = holds.sql.lock_hold
    reads = []

    def stale_lock(*, reservation_id, now):
        found = real_lock(reservation_id=reservation_id, now=now)
        reads.append(found.state)
        return replace(found, state="HELD") if len(reads) == 1 else found

    monkeypatch.setattr(holds.sql, "lock_hold", stale_lock)
    result = holds.commit(reservation_id=rid)
    assert reads == ["COMMITTED", "COMMITTED"]
    assert "idempotent" in result["message"] and result["usage_id"] == rid
    assert Transaction.objects.filter(direction="DEBIT").count() == 1
    assert TransactionService.get_balance(user.id, "CREDITS") == 3
    assert consistent()


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_racing_commits_and_releases_settle_a_hold_once(user, make_product):
    credits = make_product("CREDITS")
    make_batch(user, credits, 10)
    rids = [TransactionService.reserve_quota(user.id, "CREDITS", 2) for _ in range(3)]

    def settle(index: int):
        rid = rids[index % 3]
        if index % 2:
            return TransactionService.release_reservation(rid)
        try:
            return TransactionService.commit_reservation(rid)["usage_id"]
        except ReservationStateError:
            return "refused"

    results = run_in_threads(12, settle)
    assert not [r for r in results if isinstance(r, BaseException)], results
    states = {str(r.pk): r.state for r in Reservation.objects.all()}
    debits = Transaction.objects.filter(direction="DEBIT")
    assert {str(d.pk) for d in debits} == {r for r, s in states.items() if s == "COMMITTED"}
    assert all(d.amount == 2 for d in debits)
    held = sum(2 for s in states.values() if s == "COMMITTED")
    assert TransactionService.get_balance(user.id, "CREDITS") == 10 - held
    assert consistent()


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_racing_reserves_with_one_key_hold_once(user, make_product):
    credits = make_product("CREDITS")
    make_batch(user, credits, 10)
    results = run_in_threads(8, lambda i: holds_place(user.id))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert len({rid for rid, _fresh in results}) == 1
    assert sorted(fresh for _rid, fresh in results) == [False] * 7 + [True]
    assert TransactionService.get_balance(user.id, "CREDITS") == 7
    assert consistent()


def holds_place(user_id):
    from billable.ledger import holds

    return holds.place(user_id=user_id, key="CREDITS", amount=3, ttl=timedelta(minutes=5),
                       idempotency_key="one", metadata={}, action_type="usage")
