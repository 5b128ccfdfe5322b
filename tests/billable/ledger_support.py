"""Builders and fixtures shared by the ledger test modules (imported explicitly)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from billable.models import QuotaBatch, Transaction
from billable.services import TransactionService


@pytest.fixture(params=["sync", "async"])
def ledger(request: pytest.FixtureRequest) -> Any:
    """``TransactionService`` called through the sync method or its ``a``-prefixed twin."""

    class Caller:
        mode = request.param

        def __getattr__(self, name: str) -> Callable[..., Any]:
            if self.mode == "sync":
                return getattr(TransactionService, name)
            return async_to_sync(getattr(TransactionService, f"a{name}"))

    return Caller()


def make_batch(user: Any, product: Any, quantity: int, *, age_days: float = 0,
               expires_in_days: float | None = None, valid_in_days: float = 0,
               with_credit: bool = True) -> QuotaBatch:
    """A batch created ``age_days`` ago (with its CREDIT row, so the ledger stays consistent)."""
    now = timezone.now()
    batch = QuotaBatch.objects.create(
        user=user, product=product, initial_quantity=quantity, remaining_quantity=quantity,
        created_at=now - timedelta(days=age_days),
        valid_from=now + timedelta(days=valid_in_days) if valid_in_days else now - timedelta(
            days=age_days),
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days is not None else None,
    )
    if with_credit:
        Transaction.objects.create(user=user, quota_batch=batch, amount=quantity,
                                   direction="CREDIT", action_type="manual_grant")
    return batch


def ledger_rows() -> int:
    return Transaction.objects.count()
