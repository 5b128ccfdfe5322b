"""Helpers shared by test modules (import them; fixtures live in conftest.py)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections

POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))

#: Concurrency tests need real row locks and several connections: PostgreSQL only.
requires_postgres = pytest.mark.skipif(
    not POSTGRES, reason="needs PostgreSQL for real concurrency (set DATABASE_URL=postgres://…)"
)


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def run_in_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Run ``target(i)`` in ``count`` threads released together; return results or exceptions.

    Each thread closes its own database connection when done.
    """
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def worker(index: int) -> None:
        try:
            barrier.wait()
            results[index] = target(index)
        except BaseException as exc:
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results
