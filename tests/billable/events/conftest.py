"""Fixtures of the outbound-event tests: an endpoint, and no cached endpoint set between tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from billable.events.outbox import subscribed_types


@pytest.fixture(autouse=True)
def _fresh_endpoint_cache() -> Iterator[None]:
    subscribed_types.clear()
    yield
    subscribed_types.clear()


@pytest.fixture
def make_endpoint() -> Callable[..., Any]:
    """Builder: ``make_endpoint(url, types=[...], secret="s")``."""
    from billable.models import EventEndpoint

    def build(url: str = "http://127.0.0.1:9/none", *, types: list[str] | None = None,
              **fields: Any) -> Any:
        return EventEndpoint.objects.create(url=url, event_types=types or [], **fields)

    return build
