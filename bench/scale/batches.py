"""Consume and check as the number of spendable batches a user holds grows: 1 → 1,000
(target line ``batches``).

At every size a user holding that many spendable batches (each large enough that a consume
takes from the first one in spend order) is measured interleaved with a user holding one
batch: ``consume_quota`` and ``check_quota`` on both.
"""

from __future__ import annotations

from bench.common import Recorder, make_product, make_users, service
from bench.interleave import Plan, interleave, repeat
from bench.progress import Progress
from bench.scale.data import add_batches

SIZES = (1, 10, 100, 1_000)
QUICK_SIZES = (1, 1_000)
KEY = "BATCH_CREDITS"


def run(rec: Recorder, *, quick: bool) -> None:
    """Measure every size (only the largest in the code-only pass) and record the curve."""
    consume, check = service("consume_quota"), service("check_quota")
    sizes = QUICK_SIZES if quick else SIZES
    if rec.code_only:
        sizes = sizes[-1:]
    product = make_product(KEY)
    [single] = make_users(1, prefix="batches1")
    add_batches(single, product, 1, quantity=10**9)
    curve: dict[str, list[float]] = {"batches": [], "consume ratio": [], "consume low": [],
                                     "consume high": [], "check ratio": [], "check low": [],
                                     "check high": []}
    with Progress(f"scale/batches [{rec.backend}, {rec.mode}]", total=len(sizes)) as bar:
        for size in sizes:
            [holder] = make_users(1, prefix=f"batches{size}")
            add_batches(holder, product, size, quantity=10**9)
            last = size == sizes[-1]
            held = f"{size:,} batch{'es' if size > 1 else ''}"
            comparison = interleave({
                f"consume, {held}": repeat(lambda u=holder: consume(u.id, KEY)),
                "consume, reference user (1 batch)": repeat(lambda: consume(single.id, KEY)),
                f"check, {held}": repeat(lambda u=holder: check(u.id, KEY)),
                "check, reference user (1 batch)": repeat(lambda: check(single.id, KEY)),
            }, Plan.for_run(quick=quick, curve=not last))
            rec.rates(comparison)
            spent = rec.ratio(f"consume with {held} / with 1 batch", comparison,
                              f"consume, {held}", "consume, reference user (1 batch)",
                              target="batches" if last else None,
                              why="every spendable batch is locked and read into Python")
            read = rec.ratio(f"check_quota with {held} / with 1 batch", comparison,
                             f"check, {held}", "check, reference user (1 batch)")
            curve["batches"].append(size)
            for name, spread in (("consume", spent), ("check", read)):
                curve[f"{name} ratio"].append(spread.median)
                curve[f"{name} low"].append(spread.low)
                curve[f"{name} high"].append(spread.high)
            bar.tick(status=f"{size} batches")
    rec.series["batches"] = curve
