"""Holds: reserve units now, settle (commit) or give them back (release) later.

A hold takes units out of the batches exactly like a consumption (same order, same locks) but
writes no ledger row: the ledger invariant counts ``HELD`` reservation items as debited. Commit
writes the DEBIT rows for the settled amount (their metadata: the hold's, its idempotency key
and its id) and returns the rest; release returns everything;
a hold still ``HELD`` at its expiry is released by ``expire_batches``. The usage id of a
committed hold is the reservation id (the first DEBIT row reuses it), so replays need no lookup.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from billable.conf import MAX_RESERVATION_TTL_SECONDS, billable_settings
from billable.exceptions import (
    InsufficientFunds,
    InvalidAmount,
    InvalidInput,
    ReservationNotFound,
    ReservationStateError,
    StaleBatch,
)
from billable.ledger import sql, wallet
from billable.ledger.audit import emit_created
from billable.ledger.idempotency import claim_key
from billable.ledger.retry import drain, retrying, until_fresh
from billable.ledger.sql import HoldRow
from billable.models import Reservation, ReservationItem
from billable.models.base import uuid7
from billable.validation import coerce_pk, positive_int

HELD = Reservation.State.HELD
#: Longest hold lifetime accepted (a hold is for work in progress, not for storage).
MAX_TTL = timedelta(seconds=MAX_RESERVATION_TTL_SECONDS)
RESERVATION_FIELDS = ("id", "user", "product", "amount", "committed_amount", "state",
                      "action_type", "metadata", "expires_at", "created_at", "settled_at",
                      "idempotency_key")


def ttl_delta(ttl: Any) -> timedelta:
    """A hold lifetime from seconds or a ``timedelta``; ``None`` uses the setting.

    Positive, finite and at most :data:`MAX_TTL` (365 days), else :class:`InvalidInput` — a
    huge, infinite or NaN lifetime never reaches the date arithmetic.
    """
    if ttl is None:
        ttl = billable_settings.RESERVATION_TTL
    message = f"ttl must be a positive number of seconds (at most {int(MAX_TTL.total_seconds())})"
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, int) and not isinstance(ttl, bool):
        if ttl > MAX_TTL.total_seconds():
            raise InvalidInput(message, field="ttl")
        seconds = float(ttl)
    elif isinstance(ttl, float):
        seconds = ttl
    else:
        raise InvalidInput("ttl must be a number of seconds or a timedelta", field="ttl")
    if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_TTL.total_seconds():
        raise InvalidInput(message, field="ttl")
    return timedelta(seconds=seconds)


def parse_reservation_id(value: Any) -> UUID:
    """The reservation id as a ``UUID``; anything else is :class:`ReservationNotFound`."""
    pk = coerce_pk(value, model=Reservation)
    if not isinstance(pk, UUID):
        raise ReservationNotFound(f"Reservation not found: {value!r}")
    return pk


def reserve(*, user_id: Any, key: str, amount: int, ttl: timedelta, idempotency_key: str | None,
            metadata: dict[str, Any], action_type: str) -> str:
    """Hold ``amount`` of ``key``; raise QuotaExhausted / InsufficientFunds when it cannot."""
    reservation_id, _fresh = place(user_id=user_id, key=key, amount=amount, ttl=ttl,
                                   idempotency_key=idempotency_key, metadata=metadata,
                                   action_type=action_type)
    return reservation_id


@retrying
def place(*, user_id: Any, key: str, amount: int, ttl: timedelta, idempotency_key: str | None,
          metadata: dict[str, Any], action_type: str) -> tuple[str, bool]:
    """:func:`reserve`, also telling whether the hold is new (False: an idempotent replay)."""
    reservation_id = uuid7()
    now = timezone.now()

    def step() -> tuple[str, bool]:
        with transaction.atomic():
            if idempotency_key:
                earlier = claim_key(
                    user_id=user_id, key=idempotency_key, operation="reserve",
                    request={"product_key": key, "amount": amount, "action_type": action_type},
                    result={"reservation_id": str(reservation_id)},
                )
                if earlier is not None:
                    return str(earlier.result["reservation_id"]), False
            _hold(user_id=user_id, key=key, amount=amount, reservation_id=reservation_id,
                  ttl=ttl, metadata=metadata, action_type=action_type, now=now,
                  idempotency_key=idempotency_key)
        return str(reservation_id), True

    return until_fresh(step, give_up=lambda: InsufficientFunds(wallet.INSUFFICIENT,
                                                               product_key=key))


def _hold(*, user_id: Any, key: str, amount: int, reservation_id: UUID, ttl: timedelta,
          metadata: dict[str, Any], action_type: str, now: datetime,
          idempotency_key: str | None) -> None:
    """Lock and take the units, then insert the reservation and its items (one INSERT each)."""
    batches = wallet.lock_spendable(user_id=user_id, key=key, now=now)
    allocations = wallet.allocate(batches=batches, key=key, amount=amount)
    wallet.apply_allocations(allocations)
    sql.insert_values(model=Reservation, names=RESERVATION_FIELDS, rows=[(
        reservation_id, user_id, allocations[0].batch.product_id, amount, 0, HELD, action_type,
        metadata, now + ttl, now, None, idempotency_key,
    )])
    sql.insert_values(model=ReservationItem, names=("reservation", "quota_batch", "amount"),
                      rows=[(reservation_id, a.batch.pk, a.take) for a in allocations])


def _lock(reservation_id: UUID, now: datetime) -> HoldRow:
    found = sql.lock_hold(reservation_id=reservation_id, now=now)
    if found is None:
        raise ReservationNotFound(f"Reservation not found: {reservation_id}")
    return found


def _split(parts: Sequence[tuple[Any, int]], amount: int) -> tuple[list[Any], list[Any]]:
    settled, returned = [], []
    left = amount
    for batch_id, held in parts:
        take = min(held, left)
        left -= take
        if take or not held:
            settled.append((batch_id, take))
        if held - take:
            returned.append((batch_id, held - take))
    return settled, returned


def _usage(held: HoldRow, *, message: str, committed: int, now: datetime, balance: bool
           ) -> dict[str, Any]:
    remaining = None
    if balance:
        found = sql.spendable_summary(user_id=held.user_id, key=held.product_key, now=now)
        remaining = found[1] if found else 0
    return {
        "success": True, "message": message, "usage_id": str(held.pk),
        "reservation_id": str(held.pk), "amount": committed,
        "remaining": remaining, "metadata": _debit_metadata(held),
    }


def _debit_metadata(held: HoldRow) -> dict[str, Any]:
    """The caller's metadata, the hold's idempotency key (``None`` without one: the key
    ``consume_quota`` writes) and the reservation id; the fast settlement writes the same."""
    meta = {**held.metadata, "idempotency_key": held.idempotency_key,
            "reservation_id": str(held.pk)}
    if held.is_entitlement:
        meta["requested_amount"] = held.amount
    return meta


def _finish(held: HoldRow, state: str, now: datetime, committed: int = 0) -> None:
    """Settle the row; a concurrent settle (possible on SQLite) rolls back and retries."""
    if not sql.finish_hold(reservation_id=held.pk, state=state, committed=committed, now=now):
        raise StaleBatch(str(held.pk))


@retrying
def commit(*, reservation_id: Any, amount: Any = None, balance: bool = True) -> dict[str, Any]:
    """Settle ``amount`` (default: all) of a hold; the rest goes back. Idempotent.

    A hold past its expiry is released (as ``EXPIRED``) and the commit is refused with
    :class:`ReservationStateError`, whether or not the expiry job has run yet. With
    ``balance=False`` the answer's ``remaining`` is ``None`` (one query less, for callers
    that discard it, such as the bot kit's gating middleware).
    """
    rid = parse_reservation_id(reservation_id)
    count = None if amount is None else positive_int(amount)
    return until_fresh(lambda: _commit_once(rid, count, balance=balance), give_up=_concurrent)


def _concurrent() -> ReservationStateError:
    return ReservationStateError("Reservation is being settled concurrently")


def _commit_once(rid: UUID, count: int | None, *, balance: bool) -> dict[str, Any]:
    now = timezone.now()
    with transaction.atomic():
        held = _lock(rid, now)
        if held.state == Reservation.State.COMMITTED:
            if count is not None and count != held.committed_amount:
                raise ReservationStateError("Reservation was committed with another amount")
            return _usage(held, message="Reservation was committed previously (idempotent)",
                          committed=held.committed_amount, now=now, balance=balance)
        if held.state != HELD:
            raise ReservationStateError(f"Reservation is {held.state.lower()}")
        if held.live:
            return _settle(held, count, now, balance=balance)
        _release_locked(held, now, Reservation.State.EXPIRED)
    raise ReservationStateError("Reservation expired")


def _settle(held: HoldRow, count: int | None, now: datetime, *, balance: bool
            ) -> dict[str, Any]:
    if count is None:
        count = held.amount
    if count > held.amount:
        raise InvalidAmount(f"Cannot commit {count}: only {held.amount} held", field="amount")
    _finish(held, Reservation.State.COMMITTED, now, committed=count)
    settled, returned = _split(held.parts, count)
    debits = wallet.debit_rows(user_id=held.user_id, parts=settled, action_type=held.action_type,
                               metadata=_debit_metadata(held), first_id=held.pk)
    returns = wallet.return_units(_returns(held, returned))
    emit_created(debits, consumed=True)
    emit_created(returns)
    return _usage(held, message="Quota consumed", committed=count, now=now, balance=balance)


def _returns(held: HoldRow, parts: Sequence[tuple[Any, int]]) -> list[wallet.Return]:
    return [wallet.Return(held.user_id, batch_id, amount, str(held.pk))
            for batch_id, amount in parts]


def _release_locked(held: HoldRow, now: datetime, state: str) -> None:
    _finish(held, state, now)
    emit_created(wallet.return_units(_returns(held, held.parts)))


@retrying
def release(*, reservation_id: Any) -> bool:
    """Give a hold back; True when it is (now or already) released, False when committed."""
    rid = parse_reservation_id(reservation_id)

    def step() -> bool:
        now = timezone.now()
        with transaction.atomic():
            held = _lock(rid, now)
            if held.state == HELD:
                _release_locked(held, now, Reservation.State.RELEASED)
                return True
            return held.state != Reservation.State.COMMITTED

    return until_fresh(step, give_up=_concurrent)


def release_expired(*, user_id: Any = None, chunk: int = 500,
                    progress: Callable[[int], None] | None = None) -> int:
    """Release every ``HELD`` reservation past its expiry; return how many were released.

    ``progress(n)`` is called after each committed chunk of ``n`` holds.
    """
    return drain(lambda size: _release_expired_chunk(user_id, size), chunk=chunk,
                 progress=progress)


@retrying
def _release_expired_chunk(user_id: Any, chunk: int) -> int:
    """One transaction: lock up to ``chunk`` due holds (by id), then give every held unit back
    in one ascending batch order — never hold by hold, which would lock batches out of order."""
    now = timezone.now()
    with transaction.atomic():
        due = Reservation.objects.filter(state=HELD, expires_at__lte=now)
        if user_id is not None:
            due = due.filter(user_id=user_id)
        ids = list(due.order_by("id").select_for_update(of=("self",), no_key=True)
                   .values_list("id", flat=True)[:chunk])
        returns: list[wallet.Return] = []
        for rid in ids:
            held = _lock(rid, now)
            if sql.finish_hold(reservation_id=held.pk, state=Reservation.State.EXPIRED,
                               committed=0, now=now):
                returns += _returns(held, held.parts)
        emit_created(wallet.return_units(returns))
    return len(ids)


__all__ = ["commit", "parse_reservation_id", "place", "release", "release_expired", "reserve",
           "ttl_delta"]
