"""Ledger services against the same transactions written as raw SQL (same driver, same run).

Run it directly (``python bench/ledger.py [--quick]``): it benchmarks SQLite (a temporary file)
and PostgreSQL (database ``bench_ledger``, created and dropped here; skipped when no server
answers at ``BILLABLE_PG_URL`` / ``DATABASE_URL`` / ``postgres://postgres@127.0.0.1:5432``),
each in a subprocess of its own, and prints per backend:

* ``consume_quota`` / s and the raw-SQL consumption / s (target: service ≥ 50 % of raw);
* keyed ``consume_quota`` / s with 0 and with 100,000 ledger rows (and as many idempotency
  keys) for the user, the history inserted with bulk SQL (target: at 100k ≥ 90 % of at 0);
* ``check_quota`` / s and the raw-SQL check / s (target: service ≥ 70 % of raw).

``python -m bench`` runs it through ``run(recorder, quick=...)`` like the other benchmarks.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Recorder,
    bench_database,
    configure_django,
    credit,
    make_product,
    make_users,
    postgres_available,
    ratio,
)

HISTORY_ROWS = 100_000
KEY = "BENCH_CREDITS"


class RawLedger:
    """The consume and check transactions written by hand with Django's DB-API cursor."""

    def __init__(self) -> None:
        from django.db import connection

        from billable.models import Transaction

        self.connection = connection
        self.id_field = Transaction._meta.get_field("id")
        self.lock = " FOR UPDATE OF b" if connection.vendor == "postgresql" else ""
        self.spendable = (
            "FROM billable_quota_batches b JOIN billable_products p ON p.id = b.product_id "
            "WHERE b.user_id = %s AND p.product_key = %s AND b.state = 'ACTIVE' "
            "AND b.remaining_quantity > 0 AND b.valid_from <= %s "
            "AND (b.expires_at IS NULL OR b.expires_at > %s)")

    def _now(self) -> Any:
        from django.utils import timezone

        return self.connection.ops.adapt_datetimefield_value(timezone.now())

    def consume(self, user_id: Any, amount: int = 1) -> None:
        """Lock the spendable batches, take ``amount`` from the first, write one DEBIT."""
        from django.db import transaction

        from billable.models.base import uuid7

        now = self._now()
        with transaction.atomic(), self.connection.cursor() as cursor:
            cursor.execute(f"SELECT b.id, b.remaining_quantity {self.spendable} "
                           f"ORDER BY b.id{self.lock}", [user_id, KEY, now, now])
            batch_id, _left = cursor.fetchall()[0]
            cursor.execute(
                "UPDATE billable_quota_batches SET remaining_quantity = remaining_quantity - %s,"
                " state = CASE WHEN remaining_quantity = %s THEN 'EXHAUSTED' ELSE state END "
                "WHERE id = %s AND state = 'ACTIVE' AND remaining_quantity >= %s",
                [amount, amount, batch_id, amount])
            cursor.execute(
                "INSERT INTO billable_transactions (id, user_id, quota_batch_id, amount, "
                "direction, action_type, metadata, created_at) "
                "VALUES (%s, %s, %s, %s, 'DEBIT', 'usage', %s, %s)",
                [self.id_field.get_db_prep_value(uuid7(), self.connection), user_id, batch_id,
                 amount, json.dumps({"idempotency_key": None}), now])

    def check(self, user_id: Any) -> tuple[Any, ...] | None:
        """The ``check_quota`` read: product name and spendable total in one query."""
        now = self._now()
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT p.name, SUM(b.remaining_quantity) {self.spendable} "
                           "GROUP BY p.name", [user_id, KEY, now, now])
            row: tuple[Any, ...] | None = cursor.fetchone()
            return row


def add_history(user: Any, product: Any, rows: int) -> int:
    """Give ``user`` ``rows`` old ledger rows and ``rows`` used idempotency keys (bulk SQL)."""
    from django.db import connection, transaction

    from billable.models import QuotaBatch, Transaction

    debits = rows - 1
    lot = QuotaBatch.objects.create(user=user, product=product, initial_quantity=debits,
                                    remaining_quantity=0, state="EXHAUSTED")
    Transaction.objects.create(user=user, quota_batch=lot, amount=debits, direction="CREDIT",
                               action_type="manual_grant")
    if connection.vendor == "postgresql":
        series = "SELECT g AS n FROM generate_series(1, %s) AS g"
        make_id = "md5(random()::text || n::text)::uuid"
    else:
        series = ("WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %s) "
                  "SELECT n FROM s")
        make_id = "lower(hex(randomblob(16)))"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billable_transactions (id, user_id, quota_batch_id, amount, direction, "
            "action_type, metadata, created_at) "
            f"SELECT {make_id}, %s, %s, 1, 'DEBIT', 'usage', '{{}}', %s FROM ({series}) AS t",
            [user.pk, lot.pk.hex if connection.vendor != "postgresql" else lot.pk,
             connection.ops.adapt_datetimefield_value(lot.created_at), debits])
        cursor.execute(
            "INSERT INTO billable_idempotency_keys (user_id, key, operation, fingerprint, "
            "result, created_at) SELECT %s, 'old-' || n, 'consume', 'x', '{}', %s "
            f"FROM ({series}) AS t",
            [user.pk, connection.ops.adapt_datetimefield_value(lot.created_at), rows])
    return Transaction.objects.filter(user=user).count()


def paired_rates(ops: dict[str, Callable[[int], Any]], *, seconds: float, repeats: int
                 ) -> dict[str, float]:
    """Best-of-``repeats`` rate of each op; rounds interleave the ops in alternating order so
    drifting load (the machine is shared) and position effects hit every op alike.

    Each op is calibrated first so one round lasts about ``seconds``.
    """
    counter = itertools.count()
    sizes = {}
    for name, op in ops.items():
        started = time.perf_counter()
        for _ in range(10):
            op(next(counter))
        per_op = (time.perf_counter() - started) / 10
        sizes[name] = max(20, min(3000, int(seconds / max(per_op, 1e-6))))
    best = dict.fromkeys(ops, 0.0)
    names = list(ops)
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            gc.collect()
            gc.disable()  # like timeit: a collection must not land on one side only
            try:
                started = time.perf_counter()
                for _ in range(sizes[name]):
                    ops[name](next(counter))
                elapsed = time.perf_counter() - started
            finally:
                gc.enable()
            best[name] = max(best[name], sizes[name] / elapsed)
    return best


def run(recorder: Recorder, *, quick: bool = False) -> None:
    """Measure the service paths and their raw-SQL twins on the configured database."""
    from billable.services import TransactionService as T

    seconds, repeats = (0.2, 3) if quick else (0.8, 5)
    product = make_product(KEY)
    plain, keyed, history = make_users(3, prefix="ledger")
    for user in (plain, keyed, history):
        credit(user, product, 100_000_000)
    raw = RawLedger()
    rates = paired_rates({
        "consume_quota": lambda i: T.consume_quota(plain.id, KEY),
        "raw SQL consume": lambda i: raw.consume(plain.id),
    }, seconds=seconds, repeats=repeats)
    rates.update(paired_rates({
        "check_quota": lambda i: T.check_quota(plain.id, KEY),
        "raw SQL check": lambda i: raw.check(plain.id),
    }, seconds=seconds, repeats=repeats))
    rows = add_history(history, product, 2_000 if quick else HISTORY_ROWS)
    recorder.info["history_rows"] = rows
    at_zero, at_rows = "keyed consume_quota at 0 rows", f"keyed consume_quota at {rows} rows"
    rates.update(paired_rates({
        at_zero: lambda i: T.consume_quota(keyed.id, KEY, idempotency_key=f"k{i}"),
        at_rows: lambda i: T.consume_quota(history.id, KEY, idempotency_key=f"k{i}"),
    }, seconds=seconds, repeats=repeats))
    for name, value in rates.items():
        recorder.metric(name, value, "ops/s")
    recorder.target("consume_quota / raw SQL", required=0.5,
                    value=ratio(rates["consume_quota"], rates["raw SQL consume"]))
    recorder.target("keyed consume at 100k rows / at 0 rows", required=0.9,
                    value=ratio(rates[at_rows], rates[at_zero]))
    recorder.target("check_quota / raw SQL", required=0.7,
                    value=ratio(rates["check_quota"], rates["raw SQL check"]))
    problems = T.check_ledger()
    recorder.target("ledger invariant violations", value=len(problems), required=0,
                    at_most=True, unit="")


def _worker(backend: str, out: Path, quick: bool) -> int:
    recorder = Recorder(benchmark="ledger", backend=backend, quick=quick)
    with bench_database(backend, "bench_ledger") as url:
        configure_django(url)
        run(recorder, quick=quick)
    out.write_text(json.dumps(recorder.as_dict(), default=str))
    return 0


def _print(result: dict[str, Any]) -> None:
    print(f"== {result['backend']}")
    for metric in result["metrics"]:
        print(f"  {metric['name']:<40} {metric['value']:>12,.1f} {metric['unit']}")
    for target in result["targets"]:
        if target["unit"] == "x":
            verdict = "ok" if target["passed"] else "MISSED"
            print(f"  {target['name']:<40} {100 * (target['value'] or 0):>11.1f}% "
                  f"(target {100 * target['required']:.0f}%) {verdict}")
        else:
            print(f"  {target['name']:<40} {target['value']:>12}")


def main(argv: list[str]) -> int:
    """Benchmark every available backend in its own subprocess and print the numbers."""
    quick = "--quick" in argv or os.environ.get("BENCH_QUICK") == "1"
    backends = ["sqlite"] + (["postgresql"] if postgres_available() else [])
    results = []
    for backend in backends:
        out = Path(f"/tmp/bench_ledger_{os.getpid()}_{backend}.json")
        command = [sys.executable, __file__, "--worker", backend, str(out)]
        if quick:
            command.append("--quick")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        if subprocess.call(command, env=env) != 0 or not out.exists():
            print(f"== {backend}: FAILED")
            continue
        results.append(json.loads(out.read_text()))
        out.unlink()
        _print(results[-1])
    if "postgresql" not in backends:
        print("== postgresql: skipped (no server reachable)")
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps(results, default=str))
    return 0 if len(results) == len(backends) else 1


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--worker":
        sys.exit(_worker(sys.argv[2], Path(sys.argv[3]), "--quick" in sys.argv))
    sys.exit(main(sys.argv[1:]))
