"""The measuring instrument (``bench.interleave``) on a simulated clock: slice order, rounds,
per-round ratios, spread, and why interleaving cancels a drifting machine.

The scenarios advance a fake clock by their per-operation cost, so every property is exact and
the tests take no real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from bench.interleave import AsyncScenarios, Plan, Spread, interleave, quantile, repeat
from tests.helpers import backend_independent

#: No database, no backend-specific work: runs once, in the SQLite session.
pytestmark = backend_independent


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def costing(clock: FakeClock, cost: Callable[[float], float], log: list[str] | None = None,
            name: str = "") -> Callable[[float], int]:
    """A scenario whose operation costs ``cost(now)`` seconds of the fake clock."""

    def run(seconds: float) -> int:
        if log is not None:
            log.append(name)
        deadline, done = clock.now + seconds, 0
        while True:
            clock.now += cost(clock.now)
            done += 1
            if clock.now >= deadline:
                return done

    return run


PLAN = Plan(rounds=3, round_seconds=1.0, slice_seconds=0.1, warmup_seconds=0.2)


def test_slices_alternate_and_reverse_after_every_pass() -> None:
    clock, log = FakeClock(), []
    interleave({"A": costing(clock, lambda t: 0.01, log, "A"),
                "B": costing(clock, lambda t: 0.01, log, "B")}, PLAN, clock=clock)
    assert log[:2] == ["A", "B"]  # the warm-up
    first_round = log[2:2 + 20]
    assert first_round[:6] == ["A", "B", "B", "A", "A", "B"]
    assert first_round.count("A") == first_round.count("B") == 10
    second_round = log[22:24]
    assert second_round == ["B", "A"]  # the next round starts from the other end


def test_every_round_gives_each_scenario_a_round_of_time_and_exact_rates() -> None:
    clock = FakeClock()
    result = interleave({"fast": costing(clock, lambda t: 0.001),
                         "slow": costing(clock, lambda t: 0.004)}, PLAN, clock=clock)
    assert [len(v) for v in result.rates.values()] == [3, 3]
    assert all(seconds >= 3 * PLAN.round_seconds for seconds in result.seconds.values())
    assert result.rate("fast").median == pytest.approx(1000)
    assert result.rate("slow").median == pytest.approx(250)
    assert result.ratio("slow", "fast").values == pytest.approx((0.25, 0.25, 0.25))


def test_an_operation_longer_than_a_slice_still_counts_once_per_slice() -> None:
    clock = FakeClock()
    result = interleave({"long": costing(clock, lambda t: 0.3),
                         "short": costing(clock, lambda t: 0.01)}, PLAN, clock=clock)
    assert result.rate("long").median == pytest.approx(1 / 0.3)


def test_interleaving_cancels_a_machine_that_slows_down_during_the_run() -> None:
    # The machine gets steadily slower (a neighbour's job ramping up): every operation costs
    # (1 + t/10) times its quiet cost. B really is half as fast as A.
    def slowing(base: float) -> Callable[[float], float]:
        return lambda t: base * (1 + t / 10)

    clock = FakeClock()
    result = interleave({"A": costing(clock, slowing(0.001)),
                         "B": costing(clock, slowing(0.002))}, PLAN, clock=clock)
    assert result.ratio("B", "A").median == pytest.approx(0.5, rel=0.02)
    # Measured one after the other (the old harness), the same code reads far from 0.5.
    sequential = FakeClock()
    a = costing(sequential, slowing(0.001))(3.0) / 3.0
    b = costing(sequential, slowing(0.002))(3.0) / 3.0
    assert b / a < 0.45


def test_prepare_runs_before_each_slice_outside_the_timing() -> None:
    clock = FakeClock()
    calls = []

    class Scenario:
        def prepare(self) -> None:
            calls.append(clock.now)
            clock.now += 5.0  # expensive set-up: must not count

        def __call__(self, seconds: float) -> int:
            return costing(clock, lambda t: 0.01)(seconds)

    result = interleave({"prepared": Scenario(), "plain": costing(clock, lambda t: 0.01)},
                        PLAN, clock=clock)
    assert len(calls) > PLAN.rounds * 10
    assert result.ratio("prepared", "plain").median == pytest.approx(1.0)


def test_spread_gives_median_extremes_and_quartiles() -> None:
    spread = Spread((0.9, 1.1, 1.0, 0.5, 1.3))
    assert (spread.median, spread.low, spread.high) == (1.0, 0.5, 1.3)
    assert spread.quartiles == (pytest.approx(0.9), pytest.approx(1.1))
    assert spread.relative_spread == pytest.approx(0.8)
    assert spread.as_dict()["values"] == [0.9, 1.1, 1.0, 0.5, 1.3]
    assert quantile([], 0.5) == 0.0 and Spread(()).median == 0.0


def test_plan_for_a_full_run_has_rounds_of_a_second_and_env_overrides(
        monkeypatch: pytest.MonkeyPatch) -> None:
    full = Plan.for_run(quick=False)
    assert (full.rounds, full.round_seconds) == (5, 1.0)
    assert Plan.for_run(quick=False, curve=True).rounds == 3
    monkeypatch.setenv("BENCH_ROUNDS", "7")
    monkeypatch.setenv("BENCH_ROUND_SECONDS", "2.5")
    assert (Plan.for_run(quick=True).rounds, Plan.for_run(quick=True).round_seconds) == (7, 2.5)


def test_async_scenarios_leave_no_running_loop_for_the_sync_ones() -> None:
    seen: list[bool] = []

    def sync_op() -> None:
        try:
            asyncio.get_running_loop()
            seen.append(True)
        except RuntimeError:  # what Django's async-unsafe check relies on
            seen.append(False)

    async def async_op() -> None:
        await asyncio.sleep(0)

    plan = Plan(rounds=3, round_seconds=0.01, slice_seconds=0.002, warmup_seconds=0.001)
    with AsyncScenarios() as runner:
        result = interleave({"async": runner.repeat(async_op), "sync": repeat(sync_op)}, plan)
    assert seen and not any(seen)
    assert all(rate > 0 for rates in result.rates.values() for rate in rates)
