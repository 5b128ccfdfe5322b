"""The benchmark harness pieces that need no database: progress bar, recorder, report.

They run in-process and fast, so the plumbing behind ``python -m bench`` stays honest without a
benchmark run.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from bench.common import Recorder, percentile, ratio
from bench.interleave import Comparison, Plan
from bench.progress import Progress
from bench.report import summary_lines, write_report
from bench.targets import CODE_ONLY_BENCHMARKS, TARGETS, line
from tests.helpers import backend_independent

#: No database, no backend-specific work: runs once, in the SQLite session.
pytestmark = backend_independent


def test_percentile_interpolates_between_samples() -> None:
    samples = [float(v) for v in range(1, 101)]
    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 99) == pytest.approx(99.01)
    assert percentile([], 99) == 0.0


def test_ratio_is_none_when_a_side_is_missing() -> None:
    assert ratio(3.0, 4.0) == 0.75
    assert ratio(None, 4.0) is None
    assert ratio(3.0, 0.0) is None


def test_progress_bar_counts_steps_and_reports_the_end() -> None:
    stream = io.StringIO()
    with Progress("demo", total=4, stream=stream) as bar:
        bar.tick()
        bar.tick(2)
        assert bar.render().startswith("[" + "#" * 21 + "." * 7 + "]    3/4")
    text = stream.getvalue()
    assert "demo (4 steps)" in text
    assert "done: demo in" in text


def test_progress_bar_marks_a_failed_task() -> None:
    stream = io.StringIO()
    with pytest.raises(RuntimeError), Progress("boom", total=2, stream=stream):
        raise RuntimeError("stop")
    assert "FAILED: boom" in stream.getvalue()


def test_the_target_table_is_the_issue_table() -> None:
    assert [(t.id, t.required) for t in TARGETS] == [
        ("gated", 1.0), ("identity", 0.6), ("consume_raw", 0.6), ("check_raw", 0.8),
        ("batches", 0.8), ("history", 0.9), ("rest", 0.5), ("threads", 3.0)]
    assert CODE_ONLY_BENCHMARKS == {"bot", "ledger", "scale", "rest", "concurrency"}
    with pytest.raises(KeyError):
        line("nope")


def comparison(a: list[float], b: list[float]) -> Comparison:
    return Comparison(plan=Plan(rounds=len(a)), rates={"new": a, "base": b})


def recorded(backend: str, mode: str, rounds: list[tuple[float, float]], *, run: int = 1,
             target: str = "gated") -> dict[str, Any]:
    rec = Recorder(benchmark="bot", backend=backend, mode=mode)
    rec.ratio("gated update / consume_quota", comparison([n for n, _ in rounds],
                                                         [d for _, d in rounds]),
              "new", "base", target=target)
    rec.target("ledger invariant violations", value=0, required=0, at_most=True, unit="")
    return {**rec.as_dict(), "run": run}


def test_recorder_keeps_per_round_ratios_with_their_spread() -> None:
    result = recorded("postgresql", "durable", [(110.0, 100.0), (90.0, 100.0), (50.0, 100.0)])
    [entry] = result["ratios"]
    assert entry["values"] == [1.1, 0.9, 0.5]
    assert (entry["median"], entry["low"], entry["high"]) == (0.9, 0.5, 1.1)
    assert entry["target"] == "gated" and entry["plan"]["rounds"] == 3
    assert entry["rates"]["new"]["median"] == 90.0


def test_report_has_one_row_per_target_line_with_spread_code_only_and_mark(
        tmp_path: Path) -> None:
    results = [recorded("postgresql", "durable", [(1.2, 1.0), (1.1, 1.0), (0.9, 1.0)]),
               recorded("postgresql", "code-only", [(0.5, 1.0), (0.6, 1.0), (0.7, 1.0)]),
               recorded("sqlite", "durable", [(0.3, 1.0), (0.3, 1.0), (0.3, 1.0)])]
    text = write_report(results, tmp_path, quick=True, seconds=1.0, argv=["bench"]).read_text()
    rows = [r for r in text.splitlines() if r.startswith("| ") and "≥" in r]
    pg_rows = rows[:len(TARGETS)]
    assert [r.split(" | ")[0][2:] for r in pg_rows] == [t.path for t in TARGETS]
    assert pg_rows[0] == ("| gated update / direct `consume_quota` | ≥ 1 | 1.10 | 0.90–1.20 "
                          "| 1.00–1.15 | 0.60 (0.50–0.70) | 3 | ✅ met |")
    assert pg_rows[1].endswith("| – | – | – | – | 0 | – not measured |")
    sqlite_gated = rows[len(TARGETS)]
    assert sqlite_gated.startswith("| gated update / direct `consume_quota` | ≥ 1 | 0.30 |")
    assert "✅" not in sqlite_gated and "❌" not in sqlite_gated
    assert ("| bot | postgresql | gated update / consume_quota | 1.10 (0.90–1.20) | 0.60 "
            "(0.50–0.70) |") in text
    assert "| bot | postgresql | durable | ledger invariant violations | 0 | ≤ 0 | ok |" in text
    assert "(quick smoke run — numbers not representative)" in text
    assert (tmp_path / "targets.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((tmp_path / "results.json").read_text())[0]["mode"] == "durable"


def test_a_missed_target_is_marked_and_summarised() -> None:
    results = [recorded("postgresql", "durable", [(0.3, 1.0), (0.35, 1.0), (0.32, 1.0)])]
    [gated] = [s for s in summary_lines(results) if "gated" in s]
    assert "0.32 [0.30–0.35]" in gated and "❌ missed" in gated


def test_repeated_runs_add_the_run_to_run_spread(tmp_path: Path) -> None:
    results = [recorded("postgresql", "durable", [(v, 1.0)] * 3, run=n)
               for n, v in ((1, 0.30), (2, 0.34), (3, 0.31))]
    text = write_report(results, tmp_path, quick=False, seconds=1.0, argv=["bench"]).read_text()
    assert "| gated update / consume_quota | postgresql | durable | 0.30 | 0.34 | 0.31 | " \
           "0.30–0.34 |" in text
    # The target row pools the rounds of all three runs.
    assert "| gated update / direct `consume_quota` | ≥ 1 | 0.31 | 0.30–0.34 |" in text
