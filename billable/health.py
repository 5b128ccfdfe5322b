"""Readiness of a process: can it reach what it needs? Unauthenticated, so it says little.

``readiness()`` runs every registered probe. A *required* probe (the database ``SELECT 1`` on
this process's own connection; others registered by installed apps, e.g. a Redis ping) fails
the answer when it raises. An *informational* probe (e.g. the age of the oldest pending job)
only reports a number. The body holds ``"ok"``/``"fail"`` per required probe and the numbers —
never an error text, host name or version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection, connections

logger = logging.getLogger("billable.health")
#: Returned by a probe whose dependency is not configured here: left out of the answer.
NOT_CONFIGURED = object()
#: Seconds the whole readiness check may take before it answers "fail".
BUDGET = 5.0


@dataclass(frozen=True)
class Probe:
    """A named check: ``check()`` raises when not ready, or returns a number to report."""

    name: str
    check: Callable[[], Any]
    required: bool = True


def database() -> None:
    """``SELECT 1`` on this thread's connection.

    Broken or obsolete connections are closed first (what Django does between requests), but
    never one inside a transaction: a caller in ``atomic()`` (a host's own health view under
    ``ATOMIC_REQUESTS``, a test) would lose its work.
    """
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


_PROBES: dict[str, Probe] = {"database": Probe("database", database)}


def register_probe(name: str, check: Callable[[], Any], *, required: bool = True) -> None:
    """Add (or replace) a probe; apps call this from ``AppConfig.ready``."""
    _PROBES[name] = Probe(name, check, required)


def readiness() -> tuple[bool, dict[str, Any]]:
    """Run every probe (sync); returns ``(ready, body)``."""
    ready, checks = True, {}
    for probe in list(_PROBES.values()):
        try:
            value = probe.check()
        except Exception as exc:
            logger.warning("readiness probe %s failed: %r", probe.name, exc)
            checks[probe.name] = "fail"
            ready = ready and not probe.required
            continue
        if value is not NOT_CONFIGURED:
            checks[probe.name] = "ok" if probe.required else value
    return ready, {"status": "ok" if ready else "fail", "checks": checks}


async def areadiness() -> tuple[bool, dict[str, Any]]:
    """Async twin of :func:`readiness`, bounded by ``BUDGET`` seconds."""
    try:
        return await asyncio.wait_for(sync_to_async(readiness)(), BUDGET)
    except TimeoutError:
        return False, {"status": "fail", "checks": {"timeout": "fail"}}


__all__ = ["BUDGET", "NOT_CONFIGURED", "Probe", "areadiness", "database", "readiness",
           "register_probe"]
