"""``python -m bench --quick`` end to end: the one command writes a report with real numbers.

Runs the real suite entry point in a subprocess (Django is configured per benchmark process),
into a temporary results directory so the committed report is left alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import requires_postgres

ROOT = Path(__file__).resolve().parents[2]


def run_bench(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def results(out: Path, name: str, backend: str) -> dict:
    return json.loads((out / "data" / f"{name}-{backend}.json").read_text())


def test_quick_scale_run_on_sqlite_writes_a_report_with_numbers(tmp_path: Path) -> None:
    started = time.monotonic()
    done = run_bench(tmp_path, "--only", "scale", "--backend", "sqlite")
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - started < 60
    data = results(tmp_path, "scale", "sqlite")
    assert data["notes"] == []
    rates = [m for m in data["metrics"] if m["unit"] == "ops/s"]
    assert len(rates) == 4 and all(m["value"] > 0 and m["fresh_user"] > 0 for m in rates)
    report = (tmp_path / "report.md").read_text()
    assert "keyed consume, user with 2,000 rows / user with 0 rows (same moment)" in report
    assert "| consume_quota at 0 rows |" in report
    assert (tmp_path / "scale.png").stat().st_size > 1000


@requires_postgres
def test_quick_concurrency_run_on_postgresql_checks_overspend(tmp_path: Path) -> None:
    started = time.monotonic()
    done = run_bench(tmp_path, "--only", "concurrency")
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - started < 60
    data = results(tmp_path, "concurrency", "postgresql")
    race = next(m for m in data["metrics"] if m["name"].startswith("race for 40 units"))
    assert (race["value"], race["errors"], race["remaining"]) == (40, 0, 0)
    throughput = [m for m in data["metrics"] if m["name"].endswith("throughput")]
    assert {m["name"] for m in throughput} >= {"different users, 8 threads: throughput",
                                                "one user, 1 thread: throughput"}
    assert all(m["value"] > 0 and m["correct"] and m["errors"] == 0 for m in throughput)
    report = (tmp_path / "report.md").read_text()
    assert "one user, 8 threads: no errors, no overspend (1 = yes) | 1.00 | ≥ 1.00 | met" in report
    assert (tmp_path / "concurrency.png").exists()


def test_unknown_benchmark_name_is_refused(tmp_path: Path) -> None:
    done = run_bench(tmp_path, "--only", "nope")
    assert done.returncode == 2
    assert "unknown benchmark(s): nope" in done.stderr
    assert not (tmp_path / "report.md").exists()


def test_help_lists_the_benchmarks() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT,
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0
    assert "ledger, grants, scale, concurrency, rest, bot, purchase" in " ".join(
        done.stdout.split())
