"""The target table of issue 14: one line per ratio, where it is measured, and the bar.

Targets are ratios measured in one run on PostgreSQL; the same ratios are measured on SQLite and
reported beside them without a mark. A benchmark module records a ratio for a line with
``recorder.ratio(..., target=<id>)``; the report builds one row per line from the durable and
the code-only pass. This module imports nothing from Django (the orchestrator reads it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TargetLine:
    """One line of the target table."""

    id: str
    path: str
    required: float
    benchmark: str
    baseline: str


TARGET_BACKEND = "postgresql"

TARGETS: tuple[TargetLine, ...] = (
    TargetLine("gated", "gated update / direct `consume_quota`", 1.0, "bot",
               "a `@requires_quota` handler fed one update vs `consume_quota` called directly"),
    TargetLine("identity", "identity middleware (known user) / bare aiogram handler", 0.6, "bot",
               "the identity middleware alone on `dp.update` vs the same no-op handler without"),
    TargetLine("consume_raw", "`consume_quota` / the same consume as one raw SQL statement "
               "+ COMMIT", 0.6, "ledger",
               "one `WITH … FOR UPDATE … UPDATE … INSERT` in autocommit (SQLite: UPDATE … "
               "RETURNING + INSERT in one transaction)"),
    TargetLine("check_raw", "`check_quota` / the same read in raw SQL", 0.8, "ledger",
               "one aggregate SELECT on the batches table, the product's id and name cached"),
    TargetLine("batches", "consume with 1,000 spendable batches / with 1 batch", 0.8, "scale",
               "the same consume for a user holding one batch"),
    TargetLine("history", "keyed consume at 1M ledger rows / at 0 rows", 0.9, "scale",
               "the same keyed consume for a user without history, same table, same moment"),
    TargetLine("rest", "REST consume / in-process consume, interleaved", 0.5, "rest",
               "`POST /wallet/consume` one request at a time (keep-alive) vs `consume_quota` "
               "in-process"),
    TargetLine("threads", "8 threads on different users / 1 thread", 3.0, "concurrency",
               "`consume_quota` throughput of 8 threads (one user each) vs 1 thread"),
)

#: Benchmarks that also run a code-only pass (they measure a target line).
CODE_ONLY_BENCHMARKS = frozenset(line.benchmark for line in TARGETS)


def line(target_id: str) -> TargetLine:
    """The target line called ``target_id``."""
    for candidate in TARGETS:
        if candidate.id == target_id:
            return candidate
    raise KeyError(target_id)


__all__ = ["CODE_ONLY_BENCHMARKS", "TARGETS", "TARGET_BACKEND", "TargetLine", "line"]
