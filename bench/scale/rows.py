"""Keyed consumption as one user's ledger grows: 0 → 1,000,000 rows (target line ``history``).

At every size the user with history (its ledger and used idempotency keys written in bulk by
``bench.scale.data.fill_history``; the spendable balance stays in one large batch, so each call
does the same work) is measured interleaved with a user without history in the same table: the
ratio isolates the user's own ledger from machine noise and from the table's growth. The plain
(unkeyed) consume of the user with history is measured beside them.
"""

from __future__ import annotations

import itertools
import time

from bench.common import Recorder, credit, make_product, make_users, service
from bench.interleave import Plan, interleave, repeat
from bench.progress import Progress
from bench.scale.data import fill_history

SIZES = (0, 10_000, 100_000, 1_000_000)
QUICK_SIZES = (0, 2_000)
KEY = "SCALE_CREDITS"


def run(rec: Recorder, *, quick: bool) -> None:
    """Measure every size (only the largest in the code-only pass) and record the curve."""
    consume = service("consume_quota")
    sizes = QUICK_SIZES if quick else SIZES
    if rec.code_only:
        sizes = sizes[-1:]
    grown, fresh = make_users(2, prefix="rows")
    product = make_product(KEY)
    for user in (grown, fresh):
        credit(user, product, 10**9)
    keys = itertools.count()
    written = 0
    curve: dict[str, list[float]] = {"rows": [], "keyed, with history": [],
                                     "keyed, without history": [], "plain, with history": [],
                                     "ratio": [], "ratio low": [], "ratio high": []}
    with Progress(f"scale/rows [{rec.backend}, {rec.mode}]", total=len(sizes)) as bar:
        for size in sizes:
            started = time.perf_counter()
            added = fill_history(grown, product, size - written, start=written)
            elapsed = time.perf_counter() - started
            written += added
            if added:
                rec.metric(f"bulk insert of {added:,} ledger rows and keys", elapsed, "s",
                           rows_per_s=round(added / elapsed))
            last = size == sizes[-1]
            comparison = interleave({
                "keyed, with history": repeat(lambda: consume(
                    grown.id, KEY, idempotency_key=f"g{next(keys)}")),
                "keyed, without history": repeat(lambda: consume(
                    fresh.id, KEY, idempotency_key=f"f{next(keys)}")),
                "plain, with history": repeat(lambda: consume(grown.id, KEY)),
            }, Plan.for_run(quick=quick, curve=not last))
            rec.rates(comparison, label=f"{written:,} rows: ")
            spread = rec.ratio(f"keyed consume at {written:,} ledger rows / at 0 rows",
                               comparison, "keyed, with history", "keyed, without history",
                               target="history" if last else None,
                               why="the idempotency key probe and the spendable-batch read "
                               "as the user's ledger grows")
            curve["rows"].append(written)
            for name in comparison.rates:
                curve[name].append(comparison.rate(name).median)
            curve["ratio"].append(spread.median)
            curve["ratio low"].append(spread.low)
            curve["ratio high"].append(spread.high)
            bar.tick(status=f"{written:,} rows")
    rec.series["rows"] = curve
