"""Helpers shared by test modules (import them; fixtures live in conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections

POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))

#: Tests whose work does not depend on the suite's backend (their own SQLite file, a
#: subprocess): they run once, in the SQLite session of ``.ci/run``.
backend_independent = pytest.mark.skipif(
    POSTGRES, reason="backend-independent; runs once, in the SQLite session of the suite")

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_process(process: subprocess.Popen[Any], timeout: float = 10) -> None:
    """Terminate a server process (kill it after ``timeout`` s) and close its output pipe."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout:
        process.stdout.close()


def database_url() -> str:
    """``DATABASE_URL`` of the test database in use (PostgreSQL), for a server process."""
    params = connection.settings_dict
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    return (f"postgres://{params['USER']}{password}@{params['HOST']}:{params['PORT']}/"
            f"{params['NAME']}")


def django_process(*args: str, database: Path,
                   timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m django <args>`` in a new process on the SQLite file ``database``."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": f"sqlite:///{database}", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "django", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


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
