"""The benchmark harness pieces that need no database: progress bar, statistics, report, parsing.

They run in-process and fast, so the plumbing behind ``python -m bench`` stays honest without a
full benchmark run.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bench.common import Recorder, percentile, ratio
from bench.external import parse_output
from bench.progress import Progress
from bench.report import status, write_report


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


def test_recorder_targets_pass_fail_and_unmeasured() -> None:
    rec = Recorder(benchmark="scale", backend="sqlite")
    assert rec.target("fast enough", value=0.95, required=0.9)
    assert not rec.target("too slow", value=0.45, required=0.5)
    assert rec.target("few statements", value=1.0, required=1.0, at_most=True)
    assert not rec.target("not run", value=None, required=0.4)
    assert [status(t) for t in rec.targets] == ["met", "MISSED by 10%", "met", "not measured"]


def test_report_lists_targets_metrics_and_plots(tmp_path: Path) -> None:
    rec = Recorder(benchmark="scale", backend="postgresql")
    rec.metric("consume_quota at 0 rows", 812.4, "ops/s")
    rec.series["scale"] = {"rows": [0, 1000], "plain": [812.4, 790.0], "keyed": [700.0, 650.0]}
    rec.target("keyed consume at 1,000 rows / at 0 rows", value=650 / 700, required=0.9)
    report = write_report([rec.as_dict()], tmp_path, quick=True, seconds=1.0, argv=["bench"])
    text = report.read_text()
    row = "| scale | postgresql | keyed consume at 1,000 rows / at 0 rows | 0.93 | ≥ 0.90 | met |"
    assert row in text
    assert "| consume_quota at 0 rows | 812 | ops/s |" in text
    assert "![scale](scale.png)" in text
    assert (tmp_path / "scale.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((tmp_path / "results.json").read_text())[0]["benchmark"] == "scale"


def test_external_output_is_parsed_into_metrics_and_targets() -> None:
    output = "\n".join([
        "== sqlite",
        "consume_quota          1,234.5 ops/s",
        "raw SQL consume        2000 ops/s",
        "consume vs raw SQL: 61.7%",
        "== postgresql",
        "check_quota: 900/s",
        "check_quota vs raw: 55%",
    ])
    results = {r["backend"]: r for r in parse_output("ledger", "sqlite", output)}
    assert [m["value"] for m in results["sqlite"]["metrics"]] == [1234.5, 2000.0]
    consume = results["sqlite"]["targets"][0]
    assert (consume["name"], consume["value"], consume["passed"]) == (
        "consume_quota / raw SQL", 0.617, True)
    check = results["postgresql"]["targets"][0]
    assert (check["name"], check["value"], check["passed"]) == ("check_quota / raw SQL", 0.55,
                                                                False)
