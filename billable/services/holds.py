"""``HoldService``: holds with an idempotency key, for callers that charge on success.

A hold (``reserve_quota`` in ``TransactionService``) takes units out of the spendable balance
now; ``commit`` settles it (DEBIT rows), ``release`` gives it back. This facade is what the bot
kit's gating needs and nothing past it: placing a hold tells whether it is new or the replay of
an earlier one *and that hold's state*, so a caller never reads ``Reservation`` rows itself; a
commit can skip the balance read-back (one query less per gated update).

The module-level ``place`` / ``commit`` / ``ttl_delta`` keep the signatures the bot kit used
before ``HoldService`` existed (same validation, same results).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS

from billable.ledger import fasthold
from billable.ledger import holds as engine
from billable.models import Reservation
from billable.validation import (
    action_type_text,
    coerce_user_id,
    metadata_dict,
    normalize_product_key,
    optional_key,
    positive_int,
)

ttl_delta = engine.ttl_delta


@dataclass(frozen=True)
class PlacedHold:
    """The outcome of :meth:`HoldService.place`.

    ``fresh`` is False when ``idempotency_key`` named an earlier hold (a redelivery); ``state``
    is then that hold's state now (``HELD``, ``COMMITTED``, ``RELEASED`` or ``EXPIRED``).
    """

    reservation_id: str
    fresh: bool
    state: str


@dataclass(frozen=True)
class SettledHold:
    """The outcome of :meth:`HoldService.commit` (``remaining`` is ``None`` when not read)."""

    reservation_id: str
    usage_id: str
    amount: int
    remaining: int | None
    replayed: bool
    metadata: dict[str, Any] = field(default_factory=dict)


class HoldService:
    """Place, commit and release holds (sync + ``a``-prefixed async twins)."""

    @classmethod
    def place(cls, user_id: Any, product_key: str, amount: int = 1, *,
              idempotency_key: str | None = None, ttl: Any = None,
              metadata: dict[str, Any] | None = None, action_type: str = "usage"
              ) -> PlacedHold:
        """Hold ``amount`` units of ``product_key``.

        Raises ``QuotaExhausted`` / ``InsufficientFunds`` when the balance cannot cover it, an
        ``InvalidInput`` subclass for bad input, ``IdempotencyConflict`` when the key was used
        for another request.
        """
        rid, fresh = engine.place(
            user_id=coerce_user_id(user_id), key=normalize_product_key(product_key),
            amount=positive_int(amount), ttl=engine.ttl_delta(ttl),
            idempotency_key=optional_key(idempotency_key), metadata=metadata_dict(metadata),
            action_type=action_type_text(action_type))
        if fresh:
            return PlacedHold(rid, True, Reservation.State.HELD)
        state = Reservation.objects.filter(pk=rid).values_list("state", flat=True).first()
        return PlacedHold(rid, False, str(state or Reservation.State.RELEASED))

    @classmethod
    async def aplace(cls, user_id: Any, product_key: str, amount: int = 1, *,
                     idempotency_key: str | None = None, ttl: Any = None,
                     metadata: dict[str, Any] | None = None, action_type: str = "usage"
                     ) -> PlacedHold:
        """Async twin of :meth:`place`.

        A fresh hold under an ``idempotency_key`` that one batch covers is placed in one
        statement on the async pool, in the event loop (the gated fast path,
        ``docs/performance.md``); everything else — and every outcome but a fresh hold — is
        :meth:`place` in a worker thread, with the same rows, errors and results.
        """
        if idempotency_key:
            validated = dict(
                user_id=coerce_user_id(user_id), key=normalize_product_key(product_key),
                amount=positive_int(amount), ttl=engine.ttl_delta(ttl),
                idempotency_key=optional_key(idempotency_key),
                metadata=metadata_dict(metadata), action_type=action_type_text(action_type))
            if validated["idempotency_key"]:
                rid = await fasthold.aplace(**validated, using=DEFAULT_DB_ALIAS)
                if rid is not None:
                    return PlacedHold(rid, True, Reservation.State.HELD)
        return await sync_to_async(cls.place)(
            user_id, product_key, amount, idempotency_key=idempotency_key, ttl=ttl,
            metadata=metadata, action_type=action_type)

    @classmethod
    def commit(cls, reservation_id: Any, amount: int | None = None, *,
               read_balance: bool = True) -> SettledHold:
        """Settle all (or ``amount``) of a hold; the rest goes back. Idempotent.

        ``read_balance=False`` skips reading the balance back (``remaining`` is ``None``).
        Raises ``ReservationNotFound``, ``ReservationStateError`` (released, expired, or
        committed with another amount), ``InvalidAmount``.
        """
        result = engine.commit(reservation_id=reservation_id, amount=amount,
                               balance=read_balance)
        return SettledHold(
            reservation_id=str(result["reservation_id"]), usage_id=str(result["usage_id"]),
            amount=int(result["amount"]), remaining=result["remaining"],
            replayed="idempotent" in str(result["message"]), metadata=dict(result["metadata"]))

    @classmethod
    async def acommit(cls, reservation_id: Any, amount: int | None = None, *,
                      read_balance: bool = True) -> SettledHold:
        """Async twin of :meth:`commit`.

        Settling all of a live one-item hold without reading the balance back is one
        statement on the async pool (the gated fast path); the rest is :meth:`commit` in a
        worker thread.
        """
        if amount is None and not read_balance:
            rid = _uuid_or_none(reservation_id)
            done = None if rid is None else await fasthold.acommit(reservation_id=rid,
                                                                  using=DEFAULT_DB_ALIAS)
            if done is not None:
                row, settled = done
                return SettledHold(reservation_id=str(row.id), usage_id=str(row.id),
                                   amount=settled, remaining=None, replayed=False,
                                   metadata=dict(row.metadata))
        return await sync_to_async(cls.commit)(reservation_id, amount,
                                               read_balance=read_balance)

    @classmethod
    def release(cls, reservation_id: Any) -> bool:
        """Give a hold back; True when it is (now or already) released, False if committed."""
        return engine.release(reservation_id=reservation_id)

    @classmethod
    async def arelease(cls, reservation_id: Any) -> bool:
        """Async twin of :meth:`release`.

        Releasing a ``HELD`` one-item hold is one statement on the async pool (the gated fast
        path); the rest is :meth:`release` in a worker thread.
        """
        rid = _uuid_or_none(reservation_id)
        if rid is not None and await fasthold.arelease(reservation_id=rid,
                                                       using=DEFAULT_DB_ALIAS):
            return True
        return await sync_to_async(cls.release)(reservation_id)


def _uuid_or_none(value: Any) -> UUID | None:
    """A reservation id as a ``UUID`` (``None``: let the general path answer for it)."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        return None


def place(user_id: Any, key: str, amount: int, *, ttl: timedelta, idempotency_key: str | None,
          metadata: dict[str, Any], action_type: str) -> tuple[str, bool]:
    """The earlier engine call the bot kit used: ``(reservation id, fresh)``, validated inputs."""
    return engine.place(user_id=user_id, key=key, amount=amount, ttl=ttl,
                        idempotency_key=idempotency_key, metadata=metadata,
                        action_type=action_type)


def commit(reservation_id: Any, amount: Any = None, *, balance: bool = True
           ) -> dict[str, Any]:
    """The earlier engine call the bot kit used (the ``commit_reservation`` dict)."""
    return engine.commit(reservation_id=reservation_id, amount=amount, balance=balance)


__all__ = ["HoldService", "PlacedHold", "SettledHold", "commit", "place", "ttl_delta"]
