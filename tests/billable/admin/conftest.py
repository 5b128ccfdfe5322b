"""Builders for the admin tests: a filled ledger for one customer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from billable.models import QuotaBatch, Transaction


@pytest.fixture
def grant() -> Callable[..., QuotaBatch]:
    """Builder: ``grant(user, product, 10, offer=offer, action_type="purchase")``.

    Writes a batch and its CREDIT row the way the ledger service does (the ledger invariant
    holds), so the admin pages have real history to show.
    """

    def build(user: Any, product: Any, quantity: int, *, offer: Any = None,
              action_type: str = "purchase", expires_in: timedelta | None = None,
              created_at: Any = None) -> QuotaBatch:
        now = created_at or timezone.now()
        batch = QuotaBatch.objects.create(
            user=user, product=product, source_offer=offer, initial_quantity=quantity,
            remaining_quantity=quantity, valid_from=now, created_at=now,
            expires_at=now + expires_in if expires_in else None,
        )
        Transaction.objects.create(user=user, quota_batch=batch, amount=quantity,
                                   direction=Transaction.Direction.CREDIT,
                                   action_type=action_type, created_at=now,
                                   related_object=offer)
        return batch

    return build


@pytest.fixture
def spend() -> Callable[..., Transaction]:
    """Builder: ``spend(batch, 3, at=when)`` — a DEBIT that keeps the ledger invariant."""

    def build(batch: QuotaBatch, amount: int, *, action_type: str = "usage",
              action_id: str | None = None, at: Any = None) -> Transaction:
        QuotaBatch.objects.filter(pk=batch.pk).update(
            remaining_quantity=batch.remaining_quantity - amount)
        batch.refresh_from_db()
        return Transaction.objects.create(user=batch.user, quota_batch=batch, amount=amount,
                                          direction=Transaction.Direction.DEBIT,
                                          action_type=action_type, object_id=action_id,
                                          created_at=at or timezone.now())

    return build
