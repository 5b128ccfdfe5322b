"""Concurrency on PostgreSQL: 1, 2, 4 and 8 threads calling consume_quota.

Two shapes: every thread spends from its own user ("different users", scales with row-level
locks), and all threads spend from one user ("one user", serialised by the batch lock — it must
stay correct and not collapse). Each configuration records throughput, p50/p99 latency, errors,
and checks that the balance dropped by exactly the units reported as consumed and that the ledger
invariant holds. A final run lets 8 threads race for a balance of 40 with 80 attempts: exactly 40
must succeed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    Recorder,
    credit,
    ledger_consistent,
    make_product,
    make_users,
    percentile,
    ratio,
    remaining_total,
    service,
)
from bench.progress import Progress

THREADS = (1, 2, 4, 8)
KEY = "CONC_CREDITS"


@dataclass
class Outcome:
    """What the threads of one configuration did."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    successes: int = 0
    refusals: int = 0
    errors: list[str] = field(default_factory=list)


def race(threads: int, call: Callable[[int], dict[str, Any]], *, ops: int = 10**9,
         seconds: float = 1e9) -> Outcome:
    """Run ``call(thread_index)`` in ``threads`` threads released together, each until it made
    ``ops`` calls or ``seconds`` passed."""
    from django.db import connections

    outcome = Outcome()
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)

    def worker(index: int) -> None:
        local: list[float] = []
        ok = refused = 0
        try:
            barrier.wait()
            deadline = time.perf_counter() + seconds
            for _ in range(ops):
                if time.perf_counter() > deadline:
                    break
                started = time.perf_counter()
                result = call(index)
                local.append(time.perf_counter() - started)
                if result.get("success"):
                    ok += 1
                else:
                    refused += 1
        except Exception as exc:  # counted and reported: an exception is a failed check
            with lock:
                outcome.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connections.close_all()
            with lock:
                outcome.latencies.extend(local)
                outcome.successes += ok
                outcome.refusals += refused

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started, cpu = time.perf_counter(), time.process_time()
    for thread in pool:
        thread.join(timeout=300)
    outcome.seconds = time.perf_counter() - started
    outcome.cpu_seconds = time.process_time() - cpu
    return outcome


def best_round(threads: int, ids: list[Any], *, seconds: float, rounds: int
               ) -> tuple[Outcome, bool]:
    """Run ``rounds`` races; return the fastest one and whether every round was correct."""
    consume = service("consume_quota")
    outcomes: list[Outcome] = []
    correct = True
    for _ in range(max(rounds, 1)):
        before = remaining_total(ids)
        outcome = race(threads, lambda i: consume(ids[i % len(ids)], KEY), seconds=seconds)
        spent = before - remaining_total(ids)
        correct = correct and not outcome.errors and outcome.refusals == 0 \
            and spent == outcome.successes
        outcomes.append(outcome)
    best = max(outcomes, key=lambda o: o.successes / o.seconds if o.seconds else 0.0)
    return best, correct and ledger_consistent(ids)


def measure(rec: Recorder, *, shape: str, threads: int, seconds: float, rounds: int) -> float:
    """One configuration (best of ``rounds``): record throughput, latency, correctness."""
    users = make_users(1 if shape == "one user" else threads, prefix="conc")
    for user in users:
        credit(user, _product(), 10**6)
    outcome, correct = best_round(threads, [u.id for u in users], seconds=seconds,
                                  rounds=rounds)
    throughput = outcome.successes / outcome.seconds if outcome.seconds else 0.0
    calls = max(len(outcome.latencies), 1)
    p50, p99 = (percentile(outcome.latencies, q) * 1000 for q in (50, 99))
    label = f"{shape}, {threads} thread{'s' if threads > 1 else ''}"
    rec.metric(f"{label}: throughput", throughput, "ops/s", p50_ms=round(p50, 2),
               p99_ms=round(p99, 2), cpu_ms_per_call=round(outcome.cpu_seconds * 1000 / calls, 2),
               errors=len(outcome.errors), correct=correct)
    if threads == 1:
        # Python work holds the GIL: threads can overlap only the time spent waiting on the
        # database, so wall/CPU per call of one thread bounds the speed-up threads can reach.
        rec.metric(f"{shape}: GIL bound on thread speed-up (wall / CPU per call)",
                   outcome.seconds / outcome.cpu_seconds if outcome.cpu_seconds else 0.0, "x")
    if outcome.errors:
        rec.note(f"{label}: {len(outcome.errors)} errors, first: {outcome.errors[0]}")
    series = rec.series.setdefault("concurrency", {}).setdefault(
        shape, {"threads": [], "throughput": [], "p50_ms": [], "p99_ms": [], "correct": []})
    for key, value in (("threads", threads), ("throughput", throughput), ("p50_ms", p50),
                       ("p99_ms", p99), ("correct", correct)):
        series[key].append(value)
    return throughput


def exhaustion(rec: Recorder, *, threads: int = 8, balance: int = 40) -> bool:
    """8 threads race for ``balance`` units with twice as many attempts: no overspend allowed."""
    consume = service("consume_quota")
    user = make_users(1, prefix="race")[0]
    product = _product()
    for part in (15, 15, balance - 30):  # several batches, so consumption spans batches
        credit(user, product, part)
    attempts = 2 * balance // threads
    outcome = race(threads, lambda i: consume(user.id, KEY), ops=attempts)
    left = remaining_total([user.id])
    ok = (not outcome.errors and outcome.successes == balance and left == 0
          and ledger_consistent([user.id]))
    rec.metric("race for 40 units (8 threads x 10 attempts): successes", outcome.successes,
               "ops", refused=outcome.refusals, errors=len(outcome.errors), remaining=left)
    return ok


def _product() -> Any:
    from billable.models import Product

    return Product.objects.filter(product_key=KEY).first() or make_product(KEY)


def run(rec: Recorder, *, quick: bool) -> None:
    """All configurations plus the exhaustion race; records the four concurrency targets."""
    from django.db import connection

    if connection.vendor != "postgresql":
        rec.note("skipped: real concurrency needs PostgreSQL")
        return
    seconds, rounds = (1.0, 1) if quick else (1.0, 3)
    threads = (1, 8) if quick else THREADS
    rates: dict[tuple[str, int], float] = {}
    with Progress("concurrency [postgresql]", total=2 * len(threads) + 1) as bar:
        for shape in ("different users", "one user"):
            for count in threads:
                rates[shape, count] = measure(rec, shape=shape, threads=count, seconds=seconds,
                                             rounds=rounds)
                bar.tick(status=f"{shape}, {count} threads")
        race_ok = exhaustion(rec)
        bar.tick(status="race")
    series = rec.series["concurrency"]
    one_user_ok = all(series["one user"]["correct"]) and race_ok
    rec.target("8 threads / 1 thread, different users",
               value=ratio(rates["different users", 8], rates["different users", 1]),
               required=1.5, why="row locks are per user: different users do not wait")
    rec.target("8 threads / 1 thread, one user",
               value=ratio(rates["one user", 8], rates["one user", 1]), required=0.8,
               why="one user serialises on its batch lock; it must not collapse")
    rec.target("one user, 8 threads: no errors, no overspend (1 = yes)",
               value=1.0 if one_user_ok else 0.0, required=1.0, unit="ok")
    rec.target("all shapes: balance drop == units consumed, ledger invariant (1 = yes)",
               value=1.0 if all(series["different users"]["correct"]) else 0.0,
               required=1.0, unit="ok")
