"""Render collected benchmark results as ``report.md`` (plus ``results.json`` and the plots).

Each result is the JSON a benchmark wrote (see ``bench.common.Recorder``): metrics, targets,
plot series, notes. The report opens with the target table — met, missed by how much, or not
measured — followed by one section per benchmark with its numbers and plots.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.common import machine_info
from bench.plots import make_plots

TITLES = {
    "ledger": "Ledger services vs raw SQL (bench/ledger.py)",
    "grants": "grant_offer and exchange vs raw SQL",
    "scale": "Consumption rate as the ledger grows",
    "concurrency": "Concurrency on PostgreSQL",
    "rest": "REST API under uvicorn (2 workers)",
    "bot": "Bot updates through the kit (bench/bot.py)",
    "purchase": "Full in-chat purchase through the kit (Telegram Stars)",
    "sqlite_load": "The demo on SQLite under load (uvicorn, 16 concurrent consumes)",
}


def status(target: dict[str, Any]) -> str:
    """``met``, ``MISSED by N%`` (relative to the requirement) or ``not measured``."""
    value, required = target.get("value"), target.get("required")
    if value is None:
        return "not measured"
    if target.get("passed"):
        return "met"
    if not required:
        return "MISSED"
    if target.get("at_most"):
        return f"MISSED by {(value - required) / required:.0%}"
    return f"MISSED by {(required - value) / required:.0%}"


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float | int):
        if unit in ("x", "ok"):
            return f"{value:.2f}"
        return f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def target_table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| Benchmark | Backend | Target | Measured | Required | Status |",
             "|---|---|---|---|---|---|"]
    for result in results:
        for t in result.get("targets", []):
            sign = "≤" if t.get("at_most") else "≥"
            lines.append(f"| {result['benchmark']} | {result['backend']} | {t['name']} | "
                         f"{fmt(t.get('value'), 'x')} | {sign} {fmt(t['required'], 'x')} | "
                         f"{status(t)} |")
    return lines if len(lines) > 2 else ["No targets were measured in this run."]


def metric_table(result: dict[str, Any]) -> list[str]:
    metrics = result.get("metrics", [])
    if not metrics:
        return []
    lines = ["| Measurement | Value | Unit | Details |", "|---|---|---|---|"]
    for m in metrics:
        extra = {k: v for k, v in m.items() if k not in ("name", "value", "unit")}
        details = ", ".join(f"{k}={fmt(v)}" for k, v in extra.items())
        lines.append(f"| {m['name']} | {fmt(m['value'], m['unit'])} | {m['unit']} | "
                     f"{details} |")
    return lines


def section(name: str, results: list[dict[str, Any]], plots: dict[str, list[str]]) -> list[str]:
    lines = [f"## {TITLES.get(name, name)}", ""]
    for image in plots.get(name, []):
        lines += [f"![{name}]({image})", ""]
    for result in results:
        seconds = result.get("info", {}).get("seconds")
        took = f" ({seconds}s)" if seconds is not None else ""
        lines += [f"### {result['backend']}{took}", ""]
        for note in result.get("notes", []):
            head, _, rest = note.partition("\n")
            lines += [f"> {head}", ""]
            if rest.strip():
                lines += ["```", rest.strip(), "```", ""]
        table = metric_table(result)
        lines += [*table, ""] if table else []
        raw = result.get("raw_output")
        if raw:
            lines += ["<details><summary>script output</summary>", "", "```",
                      raw.strip()[-6000:], "```", "", "</details>", ""]
    return lines


def misses(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for result in results:
        for t in result.get("targets", []):
            if t.get("passed"):
                continue
            why = t.get("why") or "see docs/performance.md"
            lines.append(f"* **{result['benchmark']} / {result['backend']} — {t['name']}**: "
                         f"{status(t)} (measured {fmt(t.get('value'), 'x')}, required "
                         f"{fmt(t['required'], 'x')}). Cost driver: {why}. Analysis and fix: "
                         "docs/performance.md.")
    return lines


def write_report(results: list[dict[str, Any]], out: Path, *, quick: bool, seconds: float,
                 argv: list[str]) -> Path:
    """Write ``report.md``, ``results.json`` and the PNG plots into ``out``; return the report."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    plots = make_plots(results, out)
    info = machine_info()
    loads = [r["info"]["load"] for r in results if "load" in r.get("info", {})] + [info["load"]]
    databases = sorted({r.get("info", {}).get("database", "") for r in results} - {""})
    lines = [
        "# Benchmark report" + (" (quick smoke run — not representative)" if quick else ""),
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        f"`{' '.join(argv)}` in {seconds:.0f}s on {info['cpus']} CPUs, Python {info['python']}, "
        f"{'; '.join(databases) or 'no database info'}. Rates are the best of several rounds "
        "(the machine is shared; noise only slows a round down). Ratios compare numbers "
        "measured in the same run. Method and analysis: docs/performance.md.",
        "",
        f"Machine load (1-minute load average, sampled as each benchmark started): "
        f"{min(loads):.1f}–{max(loads):.1f} on {info['cpus']} CPUs. A load above the CPU count "
        "means other work shared the machine and absolute rates are pessimistic.",
        "",
        "## Targets",
        "",
        *target_table(results),
        "",
    ]
    missed = misses(results)
    if missed:
        lines += ["### Missed or unmeasured", "", *missed, ""]
    for name in dict.fromkeys(r["benchmark"] for r in results):
        lines += section(name, [r for r in results if r["benchmark"] == name], plots)
    report = out / "report.md"
    report.write_text("\n".join(lines).rstrip() + "\n")
    return report
