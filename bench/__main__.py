"""Run the benchmark suite: ``python -m bench [--quick] [--only NAME,...] [--backend B]``.

Every benchmark runs in a subprocess per database backend (Django is configured once per
process), on a database created for it and dropped afterwards. Results are collected as JSON in
``<out>/data/`` and rendered to ``<out>/report.md`` with PNG plots beside it. PostgreSQL is taken
from ``BILLABLE_PG_URL`` (or a postgres ``DATABASE_URL``), default
``postgres://postgres@127.0.0.1:5432/postgres``; without a server the PostgreSQL runs are
skipped and the report says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, postgres_available
from bench.external import EXTERNAL, run_external
from bench.report import write_report

#: In-process benchmarks (``bench/<name>.py`` with ``run(recorder, quick=...)``) and backends.
INTERNAL: dict[str, tuple[str, ...]] = {
    "grants": ("sqlite", "postgresql"),
    "scale": ("sqlite", "postgresql"),
    "concurrency": ("postgresql",),
    "rest": ("postgresql",),
    "bot": ("sqlite", "postgresql"),
    "purchase": ("sqlite", "postgresql"),
    "ledger": ("sqlite", "postgresql"),
    "sqlite_load": ("sqlite",),
}
ORDER = ("ledger", "grants", "scale", "concurrency", "rest", "bot", "purchase", "sqlite_load")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (seconds)")
    parser.add_argument("--only", action="append", default=[],
                        help=f"comma-separated subset of: {', '.join(ORDER)}")
    parser.add_argument("--backend", choices=("all", "sqlite", "postgresql"), default="all")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds allowed per benchmark subprocess")
    args = parser.parse_args(argv)
    names = [n.strip() for chunk in args.only for n in chunk.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ORDER))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    args.names = [n for n in ORDER if n in names] if names else list(ORDER)
    return args


def has_run_hook(name: str) -> bool:
    """True when ``bench/<name>.py`` offers ``run(recorder, quick=...)`` (checked as text, so
    a script that configures Django on import is never imported here)."""
    source = ROOT / "bench" / f"{name}.py"
    return source.exists() and re.search(r"^def run\(", source.read_text(), re.M) is not None


def run_internal(name: str, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run ``bench.<name>`` on ``backend`` in a subprocess and load what it wrote."""
    out = args.out / "data" / f"{name}-{backend}.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "bench.common", name, backend, str(out)]
    if args.quick:
        command.append("--quick")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    try:
        subprocess.run(command, cwd=ROOT, env=env, timeout=args.timeout, check=False,
                       stdout=sys.stderr)
    except subprocess.TimeoutExpired:
        return failed(name, backend, f"timed out after {args.timeout:.0f}s")
    if not out.exists():
        return failed(name, backend, "the worker wrote no result (crashed before the end)")
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def failed(name: str, backend: str, why: str) -> dict[str, Any]:
    return {"benchmark": name, "backend": backend, "metrics": [], "targets": [], "series": {},
            "notes": [f"FAILED: {why}"], "info": {}}


def skipped(name: str, backend: str, why: str) -> dict[str, Any]:
    return {**failed(name, backend, why), "notes": [f"skipped: {why}"]}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    has_pg = postgres_available()
    started = time.time()
    results: list[dict[str, Any]] = []
    for name in args.names:
        sys.stderr.write(f"== {name}\n")
        if name in EXTERNAL and not has_run_hook(name):
            results.extend(run_external(name, args, has_pg=has_pg))
            continue
        for backend in INTERNAL[name]:
            if args.backend not in ("all", backend):
                continue
            if backend == "postgresql" and not has_pg:
                results.append(skipped(name, backend, "PostgreSQL is not reachable"))
                continue
            results.append(run_internal(name, backend, args))
    report = write_report(results, args.out, quick=args.quick, seconds=time.time() - started,
                          argv=["python", "-m", "bench", *argv])
    sys.stderr.write(f"== report: {report}\n")
    missed = [t for r in results for t in r.get("targets", []) if not t.get("passed")]
    broken = [r for r in results if any(n.startswith("FAILED") for n in r.get("notes", []))]
    sys.stderr.write(f"== targets missed or unmeasured: {len(missed)}; "
                     f"benchmarks failed: {len(broken)}\n")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
