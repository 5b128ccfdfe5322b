"""Holds: reserve units now, settle (commit) or give them back (release) later.

A hold takes units out of the batches exactly like a consumption (same order, same locks) but
writes no ledger row: the ledger invariant counts ``HELD`` reservation items as debited. Commit
writes the DEBIT rows for the settled amount and returns the rest; release returns everything;
a hold still ``HELD`` at its expiry is released by ``expire_batches``. The usage id of a
committed hold is the reservation id (the first DEBIT row reuses it), so replays need no lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from billable.conf import billable_settings
from billable.exceptions import (
    InsufficientFunds,
    InvalidAmount,
    InvalidInput,
    QuotaExhausted,
    ReservationNotFound,
    ReservationStateError,
)
from billable.models import QuotaBatch, Reservation, ReservationItem
from billable.models.base import uuid7
from billable.services import wallet
from billable.services.idempotency import claim_key
from billable.services.validation import positive_int

HELD = Reservation.State.HELD


def ttl_delta(ttl: Any) -> timedelta:
    """A hold lifetime from seconds or a ``timedelta``; ``None`` uses the setting."""
    if ttl is None:
        ttl = billable_settings.RESERVATION_TTL
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise InvalidInput("ttl must be a number of seconds or a timedelta", field="ttl")
    if seconds <= 0:
        raise InvalidInput("ttl must be positive", field="ttl")
    return timedelta(seconds=seconds)


def parse_reservation_id(value: Any) -> UUID:
    """The reservation id as a ``UUID``; anything else is :class:`ReservationNotFound`."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except (TypeError, ValueError, AttributeError) as exc:
        raise ReservationNotFound(f"Reservation not found: {value!r}") from exc


def reserve(user_id: Any, key: str, amount: int, *, ttl: timedelta, idempotency_key: str | None,
            metadata: dict[str, Any], action_type: str) -> str:
    """Hold ``amount`` of ``key``; raise QuotaExhausted / InsufficientFunds when it cannot."""
    reservation_id = uuid7()
    now = timezone.now()
    try:
        with transaction.atomic():
            if idempotency_key:
                earlier = claim_key(
                    user_id, idempotency_key, operation="reserve",
                    request={"product_key": key, "amount": amount, "action_type": action_type},
                    result={"reservation_id": str(reservation_id)},
                )
                if earlier is not None:
                    return str(earlier.result["reservation_id"])
            batches = wallet.lock_spendable(user_id, key, now)
            allocations = wallet.allocate(batches, key, amount)
            wallet.apply_allocations(allocations)
            Reservation.objects.create(
                id=reservation_id, user_id=user_id, product_id=allocations[0].batch.product_id,
                amount=amount, action_type=action_type, metadata=metadata,
                expires_at=now + ttl, created_at=now,
            )
            ReservationItem.objects.bulk_create([
                ReservationItem(reservation_id=reservation_id, quota_batch_id=a.batch.pk,
                                amount=a.take)
                for a in allocations
            ])
    except wallet.Refusal as refusal:
        exhausted = refusal.result["error"] == "quota_exhausted"
        error = QuotaExhausted if exhausted else InsufficientFunds
        raise error(refusal.result["message"], product_key=key) from None
    return str(reservation_id)


def _lock(reservation_id: UUID) -> Reservation:
    found = (Reservation.objects.select_for_update(of=("self",)).select_related("product")
             .filter(pk=reservation_id).first())
    if found is None:
        raise ReservationNotFound(f"Reservation not found: {reservation_id}")
    return found


def _parts(reservation: Reservation) -> list[tuple[Any, int]]:
    items = reservation.items.order_by("id").values_list("quota_batch_id", "amount")
    return [(batch_id, amount) for batch_id, amount in items]


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


def _balance(reservation: Reservation, now: datetime) -> int:
    total = (QuotaBatch.objects.spendable(now)
             .filter(user_id=reservation.user_id, product_id=reservation.product_id)
             .aggregate(total=Sum("remaining_quantity"))["total"])
    return int(total or 0)


def _usage(reservation: Reservation, *, message: str, now: datetime) -> dict[str, Any]:
    return {
        "success": True, "message": message, "usage_id": str(reservation.pk),
        "reservation_id": str(reservation.pk), "amount": reservation.committed_amount,
        "remaining": _balance(reservation, now), "metadata": _debit_metadata(reservation),
    }


def _debit_metadata(reservation: Reservation) -> dict[str, Any]:
    meta = {**reservation.metadata, "reservation_id": str(reservation.pk)}
    if reservation.product.is_entitlement:
        meta["requested_amount"] = reservation.amount
    return meta


def _finish(reservation: Reservation, state: str, now: datetime, committed: int = 0) -> None:
    reservation.state = state
    reservation.committed_amount = committed
    reservation.settled_at = now
    reservation.save(update_fields=["state", "committed_amount", "settled_at"])


def commit(reservation_id: Any, amount: Any = None) -> dict[str, Any]:
    """Settle ``amount`` (default: all) of a hold; the rest goes back. Idempotent.

    A hold past its expiry is released (as ``EXPIRED``) and the commit is refused with
    :class:`ReservationStateError`, whether or not the expiry job has run yet.
    """
    rid = parse_reservation_id(reservation_id)
    count = None if amount is None else positive_int(amount)
    now = timezone.now()
    with transaction.atomic():
        held = _lock(rid)
        if held.state == Reservation.State.COMMITTED:
            if count is not None and count != held.committed_amount:
                raise ReservationStateError("Reservation was committed with another amount")
            return _usage(held, message="Reservation was committed previously (idempotent)",
                          now=now)
        if held.state != HELD:
            raise ReservationStateError(f"Reservation is {held.state.lower()}")
        if held.expires_at > now:
            return _settle(held, count, now)
        _release_locked(held, now, Reservation.State.EXPIRED)
    raise ReservationStateError("Reservation expired")


def _settle(held: Reservation, count: int | None, now: datetime) -> dict[str, Any]:
    if count is None:
        count = held.amount
    if count > held.amount:
        raise InvalidAmount(f"Cannot commit {count}: only {held.amount} held", field="amount")
    settled, returned = _split(_parts(held), count)
    debits = wallet.debit_rows(held.user_id, settled, action_type=held.action_type,
                               metadata=_debit_metadata(held), first_id=held.pk)
    returns = wallet.return_units(held.user_id, returned,
                                  metadata={"reservation_id": str(held.pk)})
    _finish(held, Reservation.State.COMMITTED, now, committed=count)
    wallet.emit_created(debits, consumed=True)
    wallet.emit_created(returns)
    return _usage(held, message="Quota consumed", now=now)


def _release_locked(held: Reservation, now: datetime, state: str) -> None:
    rows = wallet.return_units(held.user_id, _parts(held),
                               metadata={"reservation_id": str(held.pk)})
    wallet.emit_created(rows)
    _finish(held, state, now)


def release(reservation_id: Any) -> bool:
    """Give a hold back; True when it is (now or already) released, False when committed."""
    rid = parse_reservation_id(reservation_id)
    now = timezone.now()
    with transaction.atomic():
        held = _lock(rid)
        if held.state == HELD:
            _release_locked(held, now, Reservation.State.RELEASED)
            return True
        return held.state != Reservation.State.COMMITTED


def release_expired(*, user_id: Any = None, chunk: int = 500) -> int:
    """Release every ``HELD`` reservation past its expiry; return how many were released."""
    released = 0
    while True:
        now = timezone.now()
        with transaction.atomic():
            due = Reservation.objects.filter(state=HELD, expires_at__lte=now)
            if user_id is not None:
                due = due.filter(user_id=user_id)
            batch = list(due.select_related("product").order_by("id")
                         .select_for_update(of=("self",))[:chunk])
            for held in batch:
                _release_locked(held, now, Reservation.State.EXPIRED)
        released += len(batch)
        if len(batch) < chunk:
            return released


__all__ = ["commit", "parse_reservation_id", "release", "release_expired", "reserve", "ttl_delta"]
