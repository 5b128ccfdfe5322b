"""Scale: consume_quota rate (plain and keyed) as one user's ledger grows from 0 to 100,000 rows.

The history is written with bulk SQL (``INSERT ... SELECT`` over a number series) before each
measurement: exhausted batches of 99 units, each with one CREDIT and 99 DEBIT rows, plus one
idempotency key per DEBIT (as if every past consumption had been keyed). The spendable balance
lives in one large batch, so every measured call does the same work; only the amount of history
around it changes. Target: keyed consumption at 100,000 rows is
at least 90% of the rate at 0 rows (the idempotency lookup is an index probe, not a scan).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bench.common import (
    Recorder,
    credit,
    make_product,
    make_users,
    measure_rate,
    ratio,
    round_seconds,
    service,
)
from bench.progress import Progress

SIZES = (0, 1_000, 10_000, 30_000, 100_000)
QUICK_SIZES = (0, 2_000)
KEY = "SCALE_CREDITS"
ROWS_PER_BATCH = 100  # 1 CREDIT + 99 DEBIT rows per exhausted batch


def _series(vendor: str) -> str:
    """A subquery yielding n = 1..%s on either backend."""
    if vendor == "postgresql":
        return "(SELECT g AS n FROM generate_series(1, %s) AS g)"
    return ("(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %s) "
            "SELECT n FROM s)")


def fill_history(user: Any, product: Any, rows: int, *, start: int) -> int:
    """Append about ``rows`` ledger rows of exhausted history with bulk SQL; return the count."""
    from django.db import connection, transaction
    from django.utils import timezone

    batches = max(rows // ROWS_PER_BATCH, 0)
    if not batches:
        return 0
    vendor = connection.vendor
    new_id = "gen_random_uuid()" if vendor == "postgresql" else "lower(hex(randomblob(16)))"
    marker = connection.ops.adapt_datetimefield_value(
        timezone.now() - timedelta(days=30, seconds=start))
    used = ROWS_PER_BATCH - 1
    mine = "FROM billable_quota_batches b WHERE b.user_id = %s AND b.created_at = %s"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billable_quota_batches (id, user_id, product_id, initial_quantity, "
            "remaining_quantity, valid_from, state, created_at) "
            f"SELECT {new_id}, %s, %s, %s, 0, %s, 'EXHAUSTED', %s FROM {_series(vendor)} t",
            [user.pk, product.pk, used, marker, marker, batches])
        columns = ("INSERT INTO billable_transactions (id, user_id, quota_batch_id, amount, "
                   "direction, action_type, metadata, created_at) ")
        cursor.execute(columns + f"SELECT {new_id}, b.user_id, b.id, %s, 'CREDIT', 'purchase', "
                       f"'{{}}', b.created_at {mine}", [used, user.pk, marker])
        cursor.execute(columns + f"SELECT {new_id}, b.user_id, b.id, 1, 'DEBIT', 'usage', "
                       f"'{{}}', b.created_at FROM billable_quota_batches b CROSS JOIN "
                       f"{_series(vendor)} t WHERE b.user_id = %s AND b.created_at = %s",
                       [used, user.pk, marker])
        cursor.execute(
            "INSERT INTO billable_idempotency_keys (user_id, key, operation, fingerprint, "
            f"result, created_at) SELECT %s, %s || n, 'consume', 'history', '{{}}', %s "
            f"FROM {_series(vendor)} t", [user.pk, f"history-{start}-", marker, batches * used])
    return batches * ROWS_PER_BATCH


def interleaved(calls: dict[str, Any], *, count: int, repeats: int,
                tick: Any) -> dict[str, float]:
    """Best rate of each call, measuring them in turn round after round, so that a slow patch
    of the shared machine hits all of them alike instead of one."""
    best = dict.fromkeys(calls, 0.0)
    for _ in range(repeats):
        for name, call in calls.items():
            best[name] = max(best[name], measure_rate(call, count=count, repeats=1,
                                                      seconds=round_seconds() * 2 / 3))
        tick()
    return best


def run(rec: Recorder, *, quick: bool) -> None:
    """Measure plain and keyed consumption at each ledger size; record the curve and targets.

    A second user without history (``fresh``) is measured interleaved with the growing one at
    every size: the target compares the two at the same moment and table size, which isolates
    the effect of the user's own ledger from machine noise and overall table growth.
    """
    consume = service("consume_quota")
    sizes = QUICK_SIZES if quick else SIZES
    count, repeats = (200, 2) if quick else (2000, 3)
    grown, fresh = make_users(2, prefix="scale")
    product = make_product(KEY)
    for user in (grown, fresh):
        credit(user, product, 10**9)
    written = 0
    series: dict[str, list[Any]] = {"rows": list(sizes), "plain": [], "keyed": [],
                                    "fresh plain": [], "fresh keyed": []}
    with Progress(f"scale [{rec.backend}]", total=len(sizes) * repeats) as bar:
        for size in sizes:
            written += fill_history(grown, product, size - written, start=written)
            rates = interleaved({
                "plain": lambda i: consume(grown.id, KEY),
                "fresh plain": lambda i: consume(fresh.id, KEY),
                "keyed": lambda i, s=size: consume(grown.id, KEY, idempotency_key=f"g{s}-{i}"),
                "fresh keyed": lambda i, s=size: consume(fresh.id, KEY,
                                                         idempotency_key=f"f{s}-{i}"),
            }, count=count, repeats=repeats, tick=lambda s=size: bar.tick(status=f"{s} rows"))
            for name, value in rates.items():
                series[name].append(value)
            rec.metric(f"consume_quota at {size} rows", rates["plain"], "ops/s",
                       fresh_user=round(rates["fresh plain"], 1))
            rec.metric(f"keyed consume_quota at {size} rows", rates["keyed"], "ops/s",
                       fresh_user=round(rates["fresh keyed"], 1))
    rec.series["scale"] = series
    last = sizes[-1]
    rec.target(f"keyed consume, user with {last:,} rows / user with 0 rows (same moment)",
               value=ratio(series["keyed"][-1], series["fresh keyed"][-1]), required=0.9,
               why="idempotency keys are looked up through a unique (user, key) index")
    rec.metric(f"keyed consume at {last:,} rows / at 0 rows (earlier in the run)",
               ratio(series["keyed"][-1], series["keyed"][0]) or 0.0, "x")
    rec.metric(f"plain consume at {last:,} rows / at 0 rows (earlier in the run)",
               ratio(series["plain"][-1], series["plain"][0]) or 0.0, "x")
