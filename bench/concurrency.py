"""Concurrency: ``consume_quota`` from 8 threads against 1 thread, interleaved in one loop.

Each side is a :class:`Gang` of threads started once, each thread with its own connection; for
every slice the instrument releases the gang's threads together and they call until the slice
ends, so the 8-thread and the 1-thread rates are measured alternately over the same seconds.
Two shapes:

* **different users** — one user per thread: row locks never meet (target line ``threads``);
* **one user** — every thread spends from the same balance, serialised by its batch lock: it
  must not collapse and must stay exact (no target on the rate).

After each comparison the balance drop must equal the successful calls, with no error and no
refusal, and the ledger invariant must hold. A last race lets 8 threads make 80 attempts on a
balance of 40 spread over three batches: exactly 40 may succeed.

Beside the ratio the run records the **ceiling** this machine allows it, measured on the
1-thread side: the CPU time one consume costs the whole machine (this process, PostgreSQL's
backend, the kernel — read from ``/proc/stat``) and this process alone (``process_time``). With
``cores`` CPUs, 8 threads can complete at most ``cores / machine CPU per call`` calls a second,
and at most ``1 / process CPU per call`` (the GIL lets one thread run Python at a time; the
driver's own I/O waits are not counted there). The ceiling is that rate over the 1-thread rate:
when one thread already keeps the CPUs busy most of the time it waits, no number of threads in
one process can multiply its rate.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.common import (
    Recorder,
    credit,
    ledger_consistent,
    make_product,
    make_users,
    remaining_total,
    service,
)
from bench.interleave import Plan, interleave
from bench.progress import Progress

KEY = "CONC_CREDITS"
THREADS = 8


class Gang:
    """``size`` threads calling ``call(index)`` together, one slice at a time."""

    def __init__(self, size: int, call: Callable[[int], dict[str, Any]]) -> None:
        self.size, self.call = size, call
        self.start, self.done = threading.Barrier(size + 1), threading.Barrier(size + 1)
        self.lock = threading.Lock()
        self.deadline = 0.0
        self.stopping = False
        self.successes = self.refusals = self._slice = 0
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._work, args=(i,), daemon=True)
                        for i in range(size)]
        for thread in self.threads:
            thread.start()

    def __call__(self, seconds: float) -> int:
        """One slice: release every thread for ``seconds``; return the successful calls."""
        self._slice = 0
        self.deadline = time.perf_counter() + seconds
        self.start.wait()
        self.done.wait()
        return self._slice

    def _work(self, index: int) -> None:
        from django.db import connections

        try:
            while True:
                self.start.wait()
                if self.stopping:
                    return
                ok = refused = 0
                try:
                    while True:
                        if self.call(index).get("success"):
                            ok += 1
                        else:
                            refused += 1
                        if time.perf_counter() >= self.deadline:
                            break
                except Exception as exc:  # counted: an exception fails the correctness check
                    with self.lock:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                with self.lock:
                    self._slice += ok
                    self.successes += ok
                    self.refusals += refused
                self.done.wait()
        finally:
            connections.close_all()

    def close(self) -> None:
        self.stopping = True
        self.start.wait()
        for thread in self.threads:
            thread.join(timeout=60)


def busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``), or None."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()[1:]
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal …: idle and iowait are not busy
    ticks = [int(v) for v in fields[:8]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Wraps a scenario; sums its wall time, calls, machine-busy and process CPU seconds."""

    def __init__(self, scenario: Callable[[float], int]) -> None:
        self.scenario = scenario
        self.calls = 0
        self.wall = self.machine = self.process = 0.0
        self.machine_known = busy_seconds() is not None

    def __call__(self, seconds: float) -> int:
        wall, cpu, busy = time.perf_counter(), time.process_time(), busy_seconds()
        done = self.scenario(seconds)
        self.wall += time.perf_counter() - wall
        self.process += time.process_time() - cpu
        after = busy_seconds()
        if busy is not None and after is not None:
            self.machine += after - busy
        self.calls += done
        return done

    def ceiling(self, cores: int) -> dict[str, float] | None:
        """The most ``threads`` in this process can multiply this scenario's rate, or None."""
        if not self.calls or not self.machine_known or self.machine <= 0 or self.process <= 0:
            return None
        rate = self.calls / self.wall
        by_cores = cores * self.calls / self.machine
        by_gil = self.calls / self.process
        return {"ceiling": min(by_cores, by_gil) / rate, "by_cores": by_cores / rate,
                "by_gil": by_gil / rate, "machine_us": 1e6 * self.machine / self.calls,
                "process_us": 1e6 * self.process / self.calls, "wall_us": 1e6 / rate}


def shape(rec: Recorder, name: str, *, one_user: bool, quick: bool,
          tick: Callable[[], None]) -> bool:
    """Compare 8 threads with 1 thread for one shape; record rates and ratio; return whether
    every call was exact."""
    consume = service("consume_quota")
    product = _product()
    many = make_users(1 if one_user else THREADS, prefix="conc")
    [alone] = make_users(1, prefix="conc1")
    for user in [*many, alone]:
        credit(user, product, 10**9)
    ids = [u.id for u in [*many, alone]]
    before = remaining_total(ids)
    eight = Gang(THREADS, lambda i: consume(many[i % len(many)].id, KEY))
    one = Gang(1, lambda i: consume(alone.id, KEY))
    meter = CpuMeter(one)
    try:
        comparison = interleave({f"{name}, {THREADS} threads": eight, f"{name}, 1 thread": meter},
                                Plan.for_run(quick=quick), tick=tick)
    finally:
        eight.close()
        one.close()
    rec.rates(comparison)
    rec.ratio(f"{THREADS} threads / 1 thread, {name}", comparison, f"{name}, {THREADS} threads",
              f"{name}, 1 thread", target=None if one_user else "threads",
              why="the GIL: threads of one process overlap only the time spent waiting on "
              "the database" if not one_user else "one batch lock serialises the threads")
    bound = meter.ceiling(os.cpu_count() or 1)
    if bound is not None:
        rec.metric(f"{THREADS} threads / 1 thread, {name}: ceiling on {os.cpu_count()} CPUs",
                   bound["ceiling"], "x", by_cores=bound["by_cores"], by_gil=bound["by_gil"],
                   machine_cpu_us_per_call=bound["machine_us"],
                   process_cpu_us_per_call=bound["process_us"], wall_us_per_call=bound["wall_us"])
    errors = eight.errors + one.errors
    spent = before - remaining_total(ids)
    exact = (not errors and not eight.refusals and not one.refusals
             and spent == eight.successes + one.successes and ledger_consistent(ids))
    rec.metric(f"{name}: calls, errors, balance drop", eight.successes + one.successes,
               "calls", errors=len(errors), spent=spent, exact=exact)
    if errors:
        rec.note(f"{name}: {len(errors)} errors, first: {errors[0]}")
    return exact


def race(rec: Recorder, *, threads: int = THREADS, balance: int = 40) -> bool:
    """``threads`` threads make twice ``balance`` attempts on ``balance`` units: no overspend."""
    from django.db import connections

    consume = service("consume_quota")
    [user] = make_users(1, prefix="race")
    for part in (15, 15, balance - 30):
        credit(user, _product(), part)
    results: list[bool] = []
    errors: list[str] = []
    gate = threading.Barrier(threads)

    def attempt() -> None:
        try:
            gate.wait()
            for _ in range(2 * balance // threads):
                results.append(bool(consume(user.id, KEY).get("success")))
        except Exception as exc:  # counted below
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connections.close_all()

    pool = [threading.Thread(target=attempt) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    left = remaining_total([user.id])
    rec.metric(f"race for {balance} units ({threads} threads x {2 * balance // threads} "
               "attempts): successes", sum(results), "calls", refused=results.count(False),
               errors=len(errors), remaining=left)
    return (not errors and sum(results) == balance and left == 0
            and ledger_consistent([user.id]))


def _product() -> Any:
    from billable.models import Product

    return Product.objects.filter(product_key=KEY).first() or make_product(KEY)


def run(rec: Recorder, *, quick: bool) -> None:
    """Both shapes (only the target shape in the code-only pass) and the race."""
    shapes = (("different users", False),) if rec.code_only else (
        ("different users", False), ("one user", True))
    plan = Plan.for_run(quick=quick)
    with Progress(f"concurrency [{rec.backend}, {rec.mode}]",
                  total=len(shapes) * plan.rounds + 1) as bar:
        exact = [shape(rec, name, one_user=one, quick=quick, tick=bar.tick)
                 for name, one in shapes]
        raced = race(rec)
        bar.tick(status="race")
    rec.target("every call exact: balance drop == successes, no error, ledger invariant "
               "(1 = yes)", value=1.0 if all(exact) else 0.0, required=1.0, unit="ok")
    rec.target("race: 8 threads, 80 attempts, balance 40 → exactly 40 (1 = yes)",
               value=1.0 if raced else 0.0, required=1.0, unit="ok")
