"""Fixtures shared by the billable engine tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from billable.signals import quota_consumed, transaction_created


@pytest.fixture
def heard() -> Iterator[list[tuple[str, Any]]]:
    """What ``transaction_created`` / ``quota_consumed`` receivers are sent (as rows)."""
    got: list[tuple[str, Any]] = []

    def on_created(sender: Any, transaction: Any, **_: Any) -> None:
        got.append(("created", transaction))

    def on_consumed(sender: Any, usage: Any, **_: Any) -> None:
        got.append(("consumed", usage))

    transaction_created.connect(on_created, dispatch_uid="billable-tests-created")
    quota_consumed.connect(on_consumed, dispatch_uid="billable-tests-consumed")
    yield got
    transaction_created.disconnect(dispatch_uid="billable-tests-created")
    quota_consumed.disconnect(dispatch_uid="billable-tests-consumed")
