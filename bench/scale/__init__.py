"""The scaling curves: spendable batches per user (1 → 1,000), one user's ledger rows
(0 → 1,000,000) and users seen by a bot (1,000 → 100,000, with its RSS).

``run`` measures all three; the code-only pass measures only the two target points (1,000
batches vs 1, and 1M rows vs 0), since the curves themselves carry no target.
"""

from __future__ import annotations

from bench.common import Recorder
from bench.scale import batches, rows, users


def run(rec: Recorder, *, quick: bool) -> None:
    batches.run(rec, quick=quick)
    rows.run(rec, quick=quick)
    if not rec.code_only:
        users.run(rec, quick=quick)


__all__ = ["run"]
