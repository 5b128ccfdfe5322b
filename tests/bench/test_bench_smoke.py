"""``python -m bench --quick`` end to end: the harness runs and produces every row.

A smoke test only — it asserts nothing about speed. It runs the real entry point in a
subprocess (Django is configured per benchmark process) into a temporary results directory, so
the committed report is left alone: on SQLite in the SQLite session of the suite, on PostgreSQL
in the PostgreSQL session (each well under a minute on an idle 2-core machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.targets import TARGETS
from tests.helpers import POSTGRES, requires_postgres

ROOT = Path(__file__).resolve().parents[2]
MINE = "ledger,grants,scale,concurrency,rest,bot,purchase"
DURABILITY = {"sqlite": {"durable": "synchronous=FULL", "code-only": "synchronous=OFF"},
              "postgresql": {"durable": "synchronous_commit=on",
                             "code-only": "synchronous_commit=off"}}


def run_bench(out: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "BENCH_DB_PREFIX": f"bench_{os.environ.get('BILLABLE_TEST_DB_NAME', 'smoke')}"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def assert_every_row(out: Path, backend: str) -> list[dict[str, Any]]:
    """Every target line measured in both passes with per-round values; every check ok."""
    results = [r for r in json.loads((out / "results.json").read_text())
               if r["backend"] == backend]
    assert not [n for r in results for n in r["notes"] if n.startswith("FAILED")]
    for mode in ("durable", "code-only"):
        mine = [r for r in results if r["mode"] == mode]
        assert {r["info"]["durability"] for r in mine} == {DURABILITY[backend][mode]}
        measured = {e["target"]: e for r in mine for e in r["ratios"] if e["target"]}
        assert set(measured) == {t.id for t in TARGETS}
        for entry in measured.values():
            assert len(entry["values"]) >= 3 and all(v > 0 for v in entry["values"])
            assert entry["low"] <= entry["median"] <= entry["high"]
    checks = [c for r in results for c in r["targets"]]
    assert checks and all(c["passed"] for c in checks)
    report = (out / "report.md").read_text()
    for line in TARGETS:
        assert report.count(f"| {line.path} | ≥ {line.required:g} |") == 2
    for image in ("targets.png", "batches.png", "rows.png", "users.png"):
        assert (out / image).read_bytes().startswith(b"\x89PNG")
    return results


@pytest.mark.skipif(POSTGRES, reason="runs once, in the SQLite session of the suite")
def test_quick_run_on_sqlite_produces_every_row(tmp_path: Path) -> None:
    done = run_bench(tmp_path, "--backend", "sqlite", "--only", MINE)
    assert done.returncode == 0, done.stderr[-3000:]
    results = assert_every_row(tmp_path, "sqlite")
    users = next(r for r in results if r["benchmark"] == "scale" and r["mode"] == "durable")
    assert users["series"]["users"]["rss_mb"][-1] > 0
    assert "identity middleware (known user) / bare aiogram handler" in done.stderr


@requires_postgres
def test_quick_run_on_postgresql_produces_every_row_with_a_mark(tmp_path: Path) -> None:
    done = run_bench(tmp_path, "--backend", "postgresql", "--only", MINE)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_every_row(tmp_path, "postgresql")
    table = (tmp_path / "report.md").read_text().split("## The same ratios on SQLite")[0]
    marks = [row for row in table.splitlines() if row.startswith("| ") and "≥" in row]
    assert len(marks) == len(TARGETS)
    assert all(row.endswith(("✅ met |", "❌ missed |")) for row in marks)
    # the gated line's floor: the fast path's two statements under bare aiogram (PostgreSQL)
    report = (tmp_path / "report.md").read_text()
    assert "| bot | postgresql | gated update / gated floor |" in report


def test_unknown_benchmark_name_is_refused(tmp_path: Path) -> None:
    done = run_bench(tmp_path, "--only", "nope", timeout=60)
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
