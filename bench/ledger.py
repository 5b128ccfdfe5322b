"""``consume_quota`` and ``check_quota`` against their raw-SQL physical limits (``bench.raw``).

Two comparisons, each interleaved in one loop on one connection:

* ``consume_quota`` vs the same consume as one raw SQL statement + COMMIT (target line
  ``consume_raw``), with the keyed ``consume_quota`` beside them for reference;
* ``check_quota`` vs the same read in raw SQL (target line ``check_raw``).

Each side spends from a user of its own (one large batch each), so neither changes the other's
rows; the ledger invariant is checked at the end.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Recorder, credit, make_product, make_users, service
from bench.interleave import Plan, interleave, repeat
from bench.progress import Progress
from bench.raw import RawLedger

KEY = "BENCH_CREDITS"


def run(rec: Recorder, *, quick: bool) -> None:
    """Measure both comparisons and record their ratios."""
    consume, check = service("consume_quota"), service("check_quota")
    product = make_product(KEY)
    service_user, keyed_user, raw_user = make_users(3, prefix="ledger")
    for user in (service_user, keyed_user, raw_user):
        credit(user, product, 10**9)
    raw = RawLedger(KEY)
    keys = itertools.count()
    plan = Plan.for_run(quick=quick)
    with Progress(f"ledger [{rec.backend}, {rec.mode}]", total=2 * plan.rounds) as bar:
        spending = interleave({
            "consume_quota": repeat(lambda: consume(service_user.id, KEY)),
            "raw SQL consume": repeat(lambda: raw.consume(raw_user.id)),
            "keyed consume_quota": repeat(
                lambda: consume(keyed_user.id, KEY, idempotency_key=f"k{next(keys)}")),
        }, plan, tick=bar.tick)
        reading = interleave({
            "check_quota": repeat(lambda: check(service_user.id, KEY)),
            "raw SQL check": repeat(lambda: raw.check(service_user.id)),
        }, plan, tick=bar.tick)
    rec.rates(spending)
    rec.rates(reading)
    rec.ratio("consume_quota / raw SQL consume", spending, "consume_quota", "raw SQL consume",
              target="consume_raw", why="validation, idempotency bookkeeping, the lock read "
              "into Python, three statements and a COMMIT instead of one round trip")
    rec.ratio("keyed consume_quota / raw SQL consume", spending, "keyed consume_quota",
              "raw SQL consume")
    rec.ratio("check_quota / raw SQL check", reading, "check_quota", "raw SQL check",
              target="check_raw", why="argument checks and the product lookup around one query")
    problems = service("check_ledger")()
    rec.target("ledger invariant violations", value=len(problems), required=0, at_most=True,
               unit="")


if __name__ == "__main__":
    from bench.__main__ import run_alone

    sys.exit(run_alone("ledger", sys.argv[1:]))
