"""Idempotency keys backed by a UNIQUE(user, key) constraint, not by a read-then-write check.

The key row is inserted first with ``INSERT … ON CONFLICT DO NOTHING`` (no savepoint). A
concurrent caller with the same key blocks on the unique index until the first transaction
ends: if it committed, the insert does nothing and the caller replays the stored result; if it
rolled back, the insert succeeds and the caller does the work itself. The lookup is an index
probe, so its cost does not depend on the size of the user's ledger.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError
from django.utils import timezone

from billable.exceptions import IdempotencyConflict
from billable.ledger import sql
from billable.models import IdempotencyKey
from billable.validation import fingerprint


def claim_key(
    *, user_id: Any, key: str, operation: str, request: dict[str, Any], result: dict[str, Any]
) -> IdempotencyKey | None:
    """Claim ``key`` for this request; return ``None`` when claimed, else the earlier row.

    ``request`` describes the operation (product, amount, …) and is hashed into the stored
    fingerprint; ``result`` is stored as the answer a replay gets. A key already used for a
    different request raises :class:`IdempotencyConflict`. Must run inside ``atomic()``.
    """
    digest = fingerprint({"operation": operation, **request})
    if sql.insert_key(user_id=user_id, key=key, operation=operation, fingerprint=digest,
                             result=result, now=timezone.now()):
        return None
    existing = IdempotencyKey.objects.filter(user_id=user_id, key=key).first()
    if existing is None:
        raise IntegrityError(f"idempotency key {key!r} conflicted but cannot be read")
    return _same_request(existing, digest)


def used_key(*, user_id: Any, key: str, operation: str, request: dict[str, Any] | None
             ) -> IdempotencyKey | None:
    """Read-only :func:`claim_key`, for a request refused before its key was claimed (one
    indexed read, on that failure path only): ``None`` when ``key`` is unused (the refusal
    stands), the earlier row when it was used for this same request (its answer is replayed),
    :class:`IdempotencyConflict` when it was used for another one. ``request=None`` names no
    request the key could have been claimed for (an offer that does not exist): any earlier
    use is a conflict."""
    existing = IdempotencyKey.objects.filter(user_id=user_id, key=key).first()
    if existing is None:
        return None
    digest = "" if request is None else fingerprint({"operation": operation, **request})
    return _same_request(existing, digest)


def _same_request(existing: IdempotencyKey, digest: str) -> IdempotencyKey:
    if existing.fingerprint != digest:
        raise IdempotencyConflict(
            f"Idempotency key '{existing.key}' was already used for a different request",
            key=existing.key,
            operation=existing.operation,
        )
    return existing


def consume_key_row(*, user_id: Any, key: str, product_key: str, amount: int,
                    action_type: str, action_id: str | None, usage_id: Any,
                    metadata: dict[str, Any], now: Any, using: str) -> list[Any]:
    """The key row a keyed consume claims, as statement parameters (:func:`sql.key_params`):
    what :func:`claim_key` stores for ``spend.consume`` — operation ``consume``, the same
    fingerprint, the same stored answer — for the consumes that claim it inside their one
    statement (``sql.take_first_keyed``, the async consume)."""
    request = {"operation": "consume", "product_key": product_key, "amount": amount,
               "action_type": action_type, "action_id": action_id}
    return sql.key_params(user_id=user_id, key=key, operation="consume",
                          fingerprint=fingerprint(request),
                          result={"usage_id": str(usage_id), "metadata": metadata},
                          now=now, using=using)


__all__ = ["claim_key", "consume_key_row", "used_key"]
