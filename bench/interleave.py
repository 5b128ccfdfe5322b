"""The measuring instrument: the scenarios of one comparison measured in the same loop.

A *scenario* is a callable ``run(seconds) -> operations``: it repeats one operation for about
``seconds`` and returns how many it completed. :func:`interleave` runs the scenarios of one
comparison in short slices, alternating A B … B A (the order flips after every pass, so a
steady drift of the machine's speed hits every scenario alike), until each scenario has spent at
least ``round_seconds`` in the loop: that is one round. Every round yields one rate per scenario
and, for each pair, one ratio of rates measured over the same seconds. The figure reported is
the median ratio over the rounds, with its spread (min–max and interquartile range), so an
unstable measurement shows as a wide spread instead of a confident wrong number.

A scenario may have a ``prepare()`` method: it is called before each of its slices, outside the
timed part (e.g. to build the Telegram updates the next slice will feed).
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

Clock = Callable[[], float]


class Scenario(Protocol):
    def __call__(self, seconds: float) -> int: ...


@dataclass(frozen=True)
class Plan:
    """How long and how often one comparison is measured."""

    rounds: int = 5
    round_seconds: float = 1.0
    slice_seconds: float = 0.1
    warmup_seconds: float = 0.3

    @classmethod
    def for_run(cls, *, quick: bool, curve: bool = False) -> Plan:
        """The plan of a full run (5 rounds of 1 s; 3 for a point of a scaling curve) or of a
        quick smoke run (3 rounds of 0.05 s), overridable by ``BENCH_ROUNDS``,
        ``BENCH_ROUND_SECONDS`` and ``BENCH_SLICE_SECONDS``."""
        if quick:
            plan = cls(rounds=3, round_seconds=0.05, slice_seconds=0.01, warmup_seconds=0.02)
        else:
            plan = cls(rounds=3 if curve else 5)
        env = os.environ.get
        return cls(rounds=int(env("BENCH_ROUNDS") or plan.rounds),
                   round_seconds=float(env("BENCH_ROUND_SECONDS") or plan.round_seconds),
                   slice_seconds=float(env("BENCH_SLICE_SECONDS") or plan.slice_seconds),
                   warmup_seconds=plan.warmup_seconds)


@dataclass(frozen=True)
class Spread:
    """Median and spread of per-round values."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else 0.0

    @property
    def low(self) -> float:
        return min(self.values, default=0.0)

    @property
    def high(self) -> float:
        return max(self.values, default=0.0)

    @property
    def quartiles(self) -> tuple[float, float]:
        """First and third quartile (linear interpolation between rounds)."""
        return quantile(self.values, 0.25), quantile(self.values, 0.75)

    @property
    def relative_spread(self) -> float:
        """(max − min) / median: 0.1 means the rounds agree within 10 %."""
        return (self.high - self.low) / self.median if self.median else 0.0

    def as_dict(self, digits: int = 4) -> dict[str, Any]:
        q1, q3 = self.quartiles
        return {"median": round(self.median, digits), "low": round(self.low, digits),
                "high": round(self.high, digits), "q1": round(q1, digits),
                "q3": round(q3, digits), "values": [round(v, digits) for v in self.values]}


def quantile(values: tuple[float, ...] | list[float], q: float) -> float:
    """The ``q``-quantile (0–1) of ``values`` by linear interpolation; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Comparison:
    """What :func:`interleave` measured: per-round rates of every scenario."""

    plan: Plan
    rates: dict[str, list[float]] = field(default_factory=dict)
    operations: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def rate(self, name: str) -> Spread:
        return Spread(tuple(self.rates[name]))

    def ratio(self, numerator: str, denominator: str) -> Spread:
        """Per-round ``numerator rate / denominator rate`` (rounds with a zero rate skipped)."""
        pairs = zip(self.rates[numerator], self.rates[denominator], strict=True)
        return Spread(tuple(n / d for n, d in pairs if d))


def interleave(scenarios: Mapping[str, Scenario], plan: Plan, *,
               clock: Clock = time.perf_counter,
               tick: Callable[[], None] | None = None) -> Comparison:
    """Measure ``scenarios`` against each other, interleaved, for ``plan.rounds`` rounds."""
    names = list(scenarios)
    result = Comparison(plan=plan, rates={n: [] for n in names},
                        operations=dict.fromkeys(names, 0), seconds=dict.fromkeys(names, 0.0))
    for name in names:
        _slice(scenarios[name], plan.warmup_seconds, clock)
    for number in range(plan.rounds):
        gc.collect()
        done, spent = dict.fromkeys(names, 0), dict.fromkeys(names, 0.0)
        backwards = number % 2 == 1
        while min(spent.values()) < plan.round_seconds:
            for name in reversed(names) if backwards else names:
                operations, seconds = _slice(scenarios[name], plan.slice_seconds, clock)
                done[name] += operations
                spent[name] += seconds
            backwards = not backwards
        for name in names:
            result.rates[name].append(done[name] / spent[name] if spent[name] else 0.0)
            result.operations[name] += done[name]
            result.seconds[name] += spent[name]
        if tick:
            tick()
    return result


def _slice(scenario: Scenario, seconds: float, clock: Clock) -> tuple[int, float]:
    prepare = getattr(scenario, "prepare", None)
    if prepare is not None:
        prepare()
    started = clock()
    operations = scenario(seconds)
    return operations, clock() - started


def repeat(op: Callable[[], Any], *, clock: Clock = time.perf_counter) -> Scenario:
    """A scenario calling ``op()`` until its slice is over (at least once)."""

    def run(seconds: float) -> int:
        deadline = clock() + seconds
        done = 0
        while True:
            op()
            done += 1
            if clock() >= deadline:
                return done

    return run


class AsyncScenarios:
    """Async scenarios of one comparison, run on one event loop owned by this object.

    The loop runs only during an async slice, so the synchronous scenarios of the same
    comparison (Django's sync ORM refuses to run inside a running loop) can sit between them.
    Use as a context manager; the loop is closed at the end.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __enter__(self) -> AsyncScenarios:
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def run(self, awaitable: Awaitable[Any]) -> Any:
        """Run one coroutine to completion on the loop (set-up and warm-up work)."""
        return self.loop.run_until_complete(awaitable)

    def repeat(self, op: Callable[[], Awaitable[Any]], *,
               prepare: Callable[[], None] | None = None) -> Scenario:
        """A scenario awaiting ``op()`` until its slice is over (at least once)."""

        async def slice_(seconds: float) -> int:
            deadline = time.perf_counter() + seconds
            done = 0
            while True:
                await op()
                done += 1
                if time.perf_counter() >= deadline:
                    return done

        return _AsyncScenario(self.loop, slice_, prepare)


@dataclass
class _AsyncScenario:
    loop: asyncio.AbstractEventLoop
    body: Callable[[float], Awaitable[int]]
    prepare_hook: Callable[[], None] | None

    def prepare(self) -> None:
        if self.prepare_hook is not None:
            self.prepare_hook()

    def __call__(self, seconds: float) -> int:
        return self.loop.run_until_complete(self.body(seconds))


__all__ = ["AsyncScenarios", "Comparison", "Plan", "Scenario", "Spread", "interleave",
           "quantile", "repeat"]
