"""Run stand-alone benchmark scripts (``bench/ledger.py``, ``bench/bot.py``) as subprocesses.

A script that defines ``run(recorder, quick=...)`` is run like the suite's own benchmarks (see
``bench.__main__``); this module is the fallback for scripts that only print. Those scripts set
up their own databases and print their numbers. The orchestrator runs them,
keeps their output for the report and turns it into metrics and targets:

* if the script writes JSON to the path in ``BENCH_JSON`` (a ``Recorder``-shaped dict, or a list
  of them), that JSON is used as is;
* otherwise every printed line ``<label> ... <number> <unit>`` with a rate unit (``/s``) becomes
  a metric, and ratio lines ``<label> ... <number>% ...`` become targets when the label matches
  a known target.

``BENCH_QUICK=1`` is set for ``--quick`` runs (and ``--quick`` is passed when the script accepts
it); PostgreSQL is offered through ``DATABASE_URL`` pointing at a fresh ``bench_*`` database.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from argparse import Namespace
from pathlib import Path
from typing import Any

from bench.common import ROOT, bench_database

EXTERNAL = {"ledger": ROOT / "bench" / "ledger.py", "bot": ROOT / "bench" / "bot.py"}

#: (benchmark, regex on a lower-cased ratio label, required ratio, target name)
KNOWN_TARGETS = (
    ("ledger", r"keyed.*100", 0.9, "keyed consume at 100k rows / at 0 rows"),
    ("ledger", r"check", 0.7, "check_quota / raw SQL"),
    ("ledger", r"consume", 0.5, "consume_quota / raw SQL"),
    ("bot", r"identity", 0.5, "identity middleware / bare handler"),
    ("bot", r"gated", 0.7, "gated handler / direct consume_quota"),
)

NUMBER = r"([0-9][0-9,_]*(?:\.[0-9]+)?)"
RATE_LINE = re.compile(rf"^\s*(.+?)[\s:=|]+{NUMBER}\s*((?:[a-z_]+)?/s)\b", re.IGNORECASE)
PERCENT_LINE = re.compile(rf"^\s*(.+?)[\s:=|]+{NUMBER}\s*%", re.IGNORECASE)
BACKEND = re.compile(r"\b(sqlite|postgres(?:ql)?)\b", re.IGNORECASE)


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("_", ""))


def parse_output(name: str, backend: str, text: str) -> list[dict[str, Any]]:
    """Metrics and targets from a script's printed output, one result per backend seen."""
    results: dict[str, dict[str, Any]] = {}
    current = backend
    for line in text.splitlines():
        seen = BACKEND.search(line)
        if seen and ("=" in line[:3] or line.strip().startswith(("#", "[", "-")) or
                     line.strip().lower().startswith(seen.group(1).lower())):
            current = "postgresql" if seen.group(1).lower().startswith("postgres") else "sqlite"
        result = results.setdefault(current, {"benchmark": name, "backend": current,
                                              "metrics": [], "targets": [], "series": {},
                                              "notes": [], "info": {}})
        percent = PERCENT_LINE.match(line)
        if percent:
            _add_target(result, name, percent.group(1), _number(percent.group(2)) / 100)
            continue
        rate = RATE_LINE.match(line)
        if rate:
            unit = rate.group(3) if rate.group(3) != "/s" else "ops/s"
            result["metrics"].append({"name": rate.group(1).strip(" :.-|"),
                                      "value": _number(rate.group(2)), "unit": unit})
    return [r for r in results.values() if r["metrics"] or r["targets"]]


def _add_target(result: dict[str, Any], name: str, label: str, value: float) -> None:
    lowered = label.lower()
    for bench, pattern, required, title in KNOWN_TARGETS:
        if bench == name and re.search(pattern, lowered):
            if any(t["name"] == title for t in result["targets"]):
                return
            result["targets"].append({"name": title, "value": round(value, 3),
                                      "required": required, "unit": "x",
                                      "passed": value >= required, "why": label.strip()})
            return
    result["metrics"].append({"name": label.strip(" :.-|"), "value": value, "unit": "x"})


def _execute(name: str, args: Namespace, env: dict[str, str], backend: str
             ) -> list[dict[str, Any]]:
    script = EXTERNAL[name]
    command = [sys.executable, str(script)]
    if args.quick and "--quick" in script.read_text():
        command.append("--quick")
    with tempfile.TemporaryDirectory(prefix=f"bench_{name}_") as folder:
        out = Path(folder) / "result.json"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_JSON": str(out),
               "BENCH_QUICK": "1" if args.quick else "", "PYTHONWARNINGS": "ignore", **env}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        try:
            done = subprocess.run(command, cwd=ROOT, env=env, timeout=args.timeout,
                                  capture_output=True, text=True, check=False)
        except subprocess.TimeoutExpired as exc:
            text = exc.stdout if isinstance(exc.stdout, str) else ""
            return [_failure(name, backend, f"timed out after {args.timeout:.0f}s", text)]
        sys.stderr.write(done.stderr[-3000:])
        text = done.stdout + ("" if done.returncode == 0 else "\n" + done.stderr[-3000:])
        if out.exists():
            loaded = json.loads(out.read_text())
            found = loaded if isinstance(loaded, list) else [loaded]
        else:
            found = parse_output(name, backend, done.stdout)
    if done.returncode != 0 or not found:
        why = f"exit code {done.returncode}" if done.returncode else "no numbers recognised"
        return [_failure(name, backend, why, text)]
    for result in found:
        result.setdefault("raw_output", text)
    return found


def _failure(name: str, backend: str, why: str, text: str) -> dict[str, Any]:
    return {"benchmark": name, "backend": backend, "metrics": [], "targets": [], "series": {},
            "notes": [f"FAILED: {why}"], "info": {}, "raw_output": text}


def run_external(name: str, args: Namespace, *, has_pg: bool) -> list[dict[str, Any]]:
    """Run ``bench/<name>.py``: once for all backends (ledger), or per backend (bot)."""
    if not EXTERNAL[name].exists():
        return [_failure(name, "-", f"{EXTERNAL[name].name} does not exist yet", "")]
    if name == "ledger":
        env = {} if has_pg else {"BILLABLE_PG_URL": "", "DATABASE_URL": ""}
        return _execute(name, args, env, "sqlite")
    results = []
    if args.backend in ("all", "sqlite"):
        results += _execute(name, args, {"DATABASE_URL": ""}, "sqlite")
    if args.backend in ("all", "postgresql") and has_pg:
        with bench_database("postgresql", f"bench_{name}_{os.getpid()}") as url:
            results += _execute(name, args, {"DATABASE_URL": url}, "postgresql")
    return results
