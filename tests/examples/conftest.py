"""Fixtures of the examples' tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from asgiref.sync import sync_to_async
from django.db import connections


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    """Close the connection opened by ``sync_to_async``'s worker thread after each test.

    Async tests reach the database from asgiref's thread-sensitive worker, whose connection
    would otherwise stay open and keep PostgreSQL from dropping the test database.
    """
    yield
    await sync_to_async(connections.close_all)()
