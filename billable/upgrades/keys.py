"""Carry 0.2's idempotency keys into 0.3's ``billable_idempotency_keys`` table.

0.2 kept a consumption's key only in the metadata of its DEBIT rows and found it again by
scanning the ledger. 0.3 looks keys up in a table with a UNIQUE(user, key) constraint, so without
this step a client retrying a pre-upgrade request after the upgrade would be charged twice.

0.2 scoped a key by action type; 0.3 by user. Where one user used a key for several
consumptions, the earliest keeps it, and a retry of a later one is refused as an
``idempotency_conflict`` (never charged again) — deliberate difference #2 of
docs/compatibility.md. The stored fingerprint is the one 0.3 computes for the same request, so a
faithful retry replays the original usage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CHUNK = 1000


@dataclass
class Call:
    """The DEBIT rows one 0.2 ``consume_quota`` call wrote (one per batch it touched)."""

    user_id: Any
    key: str
    product_key: str
    action_type: str
    action_id: str | None
    amount: int = 0
    last_id: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: Any = None


def import_keys(apps: Any) -> int:
    """Create one key row per (user, key) found in 0.2 DEBIT metadata; returns how many."""
    # reason: billable.validation imports the models; migrations import this module early
    from billable.validation import fingerprint

    IdempotencyKey = apps.get_model("billable", "IdempotencyKey")
    rows = [
        IdempotencyKey(user_id=call.user_id, key=call.key, operation="consume",
                       fingerprint=fingerprint({
                           "operation": "consume", "product_key": call.product_key,
                           "amount": call.amount, "action_type": call.action_type,
                           "action_id": call.action_id}),
                       result={"usage_id": str(call.last_id), "metadata": call.metadata},
                       created_at=call.created_at)
        for call in _first_calls(apps)
    ]
    IdempotencyKey.objects.bulk_create(rows, batch_size=CHUNK)
    return len(rows)


def _first_calls(apps: Any) -> list[Call]:
    """For each (user, key), the earliest consumption that used it, its DEBIT rows summed."""
    Transaction = apps.get_model("billable", "Transaction")
    debits = (Transaction.objects.filter(direction="DEBIT", metadata__has_key="idempotency_key")
              .order_by("created_at", "id")
              .values_list("id", "user_id", "amount", "action_type", "object_id", "metadata",
                           "created_at", "quota_batch__product__product_key"))
    calls: dict[tuple[Any, ...], Call] = {}
    first: dict[tuple[Any, str], tuple[Any, ...]] = {}
    for row_id, user_id, amount, action, object_id, metadata, created, product in (
            debits.iterator(CHUNK)):
        raw = (metadata or {}).get("idempotency_key")
        key = str(raw).strip() if isinstance(raw, (str, int)) and not isinstance(raw, bool) else ""
        if not key or not product or len(key) > 255:
            continue
        ident = (user_id, key, action, object_id, product)
        call = calls.setdefault(ident, Call(user_id, key, product, action, object_id,
                                            created_at=created))
        call.amount += amount
        first.setdefault((user_id, key), ident)
        call.last_id, call.metadata = row_id, metadata
    return [calls[ident] for ident in first.values()]


__all__ = ["import_keys"]
