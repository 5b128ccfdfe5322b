"""The one global lock order of every write path, and the account lock shared by them.

Every transaction that takes more than one kind of row lock takes them in this order, each kind
in ascending primary key::

    1. orders            (payment, cancel, refund, customer merge, gift claim)
    2. accounts (users)  FOR NO KEY UPDATE (merge, referrals, trial claims, promo redemptions,
                         exchanges, every grant, refunds)
    3. unique-key rows   idempotency keys and trial history (inserted, or moved by a merge)
    4. reservations      FOR NO KEY UPDATE (commit, release, expired-hold release, merge)
    5. quota batches     FOR NO KEY UPDATE, or conditional UPDATEs issued in that order
                         (consume, exchange, hold placement and return, expiry, revocation,
                         merge, period re-chaining)

Inserting a row that references another (a ledger row → its batch and account) takes only a
``KEY SHARE`` lock, which none of the locks above conflicts with, so plain inserts never join a
lock cycle. See ``docs/ledger.md`` (*Lock order*) for why each path fits this order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model


def lock_users(pks: Iterable[Any]) -> set[Any]:
    """Lock the accounts ``pks`` (ascending, ``FOR NO KEY UPDATE``); return those that exist."""
    wanted = sorted(set(pks))
    if not wanted:
        return set()
    users = get_user_model().objects.select_for_update(no_key=True).filter(pk__in=wanted)
    return set(users.order_by("pk").values_list("pk", flat=True))


__all__ = ["lock_users"]
