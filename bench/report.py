"""Render collected benchmark results as ``report.md`` (plus ``results.json`` and the plots).

Each result is the JSON one benchmark process wrote (``bench.common.Recorder``): ratios (per
round, with their target line), metrics, checks, plot series, notes, and the durability mode
and run number the orchestrator added. The report opens with the target table — one row per
line of ``bench.targets.TARGETS`` with the durable median, its spread, the code-only median
and a mark — then the same ratios on SQLite, every ratio with its code-only twin, the
run-to-run spread when the run was repeated, the checks, the plots, and one section per
benchmark.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.common import machine_info
from bench.interleave import Spread
from bench.plots import make_plots
from bench.targets import TARGET_BACKEND, TARGETS, TargetLine

TITLES = {
    "ledger": "Ledger services vs raw SQL (bench/ledger.py)",
    "grants": "grant_offer and exchange vs raw SQL",
    "scale": "Scaling curves: batches, ledger rows, users seen",
    "concurrency": "Concurrency: 8 threads vs 1 thread",
    "rest": "REST API under uvicorn vs in-process",
    "bot": "Bot updates through the kit (bench/bot.py)",
    "purchase": "Full in-chat purchase through the kit (Telegram Stars)",
    "sqlite_load": "The demo on SQLite under load (uvicorn, 16 concurrent consumes)",
}
Results = list[dict[str, Any]]


def pooled(results: Results, *, target: str | None = None, name: str | None = None,
           backend: str, mode: str) -> Spread | None:
    """The per-round values of one ratio, pooled over the runs; None when not measured."""
    values: list[float] = []
    for result in results:
        if result.get("backend") != backend or result.get("mode", "durable") != mode:
            continue
        for entry in result.get("ratios", []):
            if (target and entry.get("target") == target) or (name and entry["name"] == name):
                values += entry["values"]
    return Spread(tuple(values)) if values else None


def fmt_spread(spread: Spread | None) -> tuple[str, str, str]:
    """(median, min–max, IQR) as text."""
    if spread is None:
        return "–", "–", "–"
    q1, q3 = spread.quartiles
    return (f"{spread.median:.2f}", f"{spread.low:.2f}–{spread.high:.2f}",
            f"{q1:.2f}–{q3:.2f}")


def mark(line: TargetLine, spread: Spread | None) -> str:
    if spread is None:
        return "– not measured"
    return "✅ met" if spread.median >= line.required else "❌ missed"


def target_table(results: Results, backend: str) -> list[str]:
    """One row per target line: median, spread, code-only median and spread, mark."""
    graded = backend == TARGET_BACKEND
    lines = ["| Path | Target | Median | Spread (min–max) | IQR | Code-only median "
             "(min–max) | Rounds |" + (" Mark |" if graded else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if graded else "")]
    for line in TARGETS:
        durable = pooled(results, target=line.id, backend=backend, mode="durable")
        code = pooled(results, target=line.id, backend=backend, mode="code-only")
        median, span, iqr = fmt_spread(durable)
        code_text = "–" if code is None else f"{code.median:.2f} ({code.low:.2f}–{code.high:.2f})"
        rounds = len(durable.values) if durable else 0
        row = (f"| {line.path} | ≥ {line.required:g} | {median} | {span} | {iqr} | "
               f"{code_text} | {rounds} |")
        lines.append(row + (f" {mark(line, durable)} |" if graded else ""))
    return lines


def every_ratio(results: Results) -> list[str]:
    """Every ratio measured, durable beside code-only (rounds pooled over the runs)."""
    keys = dict.fromkeys((r["benchmark"], r["backend"], e["name"])
                         for r in results for e in r.get("ratios", []))
    if not keys:
        return []
    lines = ["| Benchmark | Backend | Ratio | Durable median (min–max) | Code-only median "
             "(min–max) |", "|---|---|---|---|---|"]
    for benchmark, backend, name in keys:
        mine = [r for r in results if r["benchmark"] == benchmark]
        cells = []
        for mode in ("durable", "code-only"):
            spread = pooled(mine, name=name, backend=backend, mode=mode)
            cells.append("–" if spread is None else
                         f"{spread.median:.2f} ({spread.low:.2f}–{spread.high:.2f})")
        lines.append(f"| {benchmark} | {backend} | {name} | {cells[0]} | {cells[1]} |")
    return lines


def run_to_run(results: Results) -> list[str]:
    """Every ratio's median per run and the spread of those medians (when runs > 1)."""
    runs = sorted({r.get("run", 1) for r in results})
    if len(runs) < 2:
        return []
    keys = dict.fromkeys((r["backend"], r.get("mode", "durable"), e["name"])
                         for r in results for e in r.get("ratios", []))
    lines = ["| Ratio | Backend | Mode | " + " | ".join(f"run {n}" for n in runs)
             + " | Spread of the medians |", "|---|---|---|" + "---|" * (len(runs) + 1)]
    for backend, mode, name in keys:
        medians = [pooled([r for r in results if r.get("run", 1) == n], name=name,
                          backend=backend, mode=mode) for n in runs]
        found = [m.median for m in medians if m is not None]
        cells = " | ".join("–" if m is None else f"{m.median:.2f}" for m in medians)
        spread = f"{min(found):.2f}–{max(found):.2f}" if found else "–"
        lines.append(f"| {name} | {backend} | {mode} | {cells} | {spread} |")
    return lines


def checks_table(results: Results) -> list[str]:
    lines = ["| Benchmark | Backend | Mode | Check | Value | Required | Status |",
             "|---|---|---|---|---|---|---|"]
    for result in results:
        for check in result.get("targets", []):
            sign = "≤" if check.get("at_most") else "≥"
            value = check.get("value")
            status = "not measured" if value is None else "ok" if check["passed"] else "FAILED"
            lines.append(f"| {result['benchmark']} | {result['backend']} | "
                         f"{result.get('mode', 'durable')} | {check['name']} | "
                         f"{'–' if value is None else f'{value:g}'} | {sign} "
                         f"{check['required']:g} | {status} |")
    return lines if len(lines) > 2 else []


def fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, float | int):
        return str(value)
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}" if abs(value) < 100 \
        else f"{value:,.0f}"


def ratio_table(result: dict[str, Any]) -> list[str]:
    if not result.get("ratios"):
        return []
    lines = ["| Ratio | Median | Min–max | IQR | Per round |", "|---|---|---|---|---|"]
    for entry in result["ratios"]:
        per_round = ", ".join(f"{v:.2f}" for v in entry["values"])
        lines.append(f"| {entry['name']} | {entry['median']:.2f} | {entry['low']:.2f}–"
                     f"{entry['high']:.2f} | {entry['q1']:.2f}–{entry['q3']:.2f} | "
                     f"{per_round} |")
    return [*lines, ""]


def metric_table(result: dict[str, Any]) -> list[str]:
    if not result.get("metrics"):
        return []
    lines = ["| Measurement | Value | Unit | Details |", "|---|---|---|---|"]
    for m in result["metrics"]:
        extra = {k: v for k, v in m.items() if k not in ("name", "value", "unit")}
        details = ", ".join(f"{k}={fmt(v)}" for k, v in extra.items())
        lines.append(f"| {m['name']} | {fmt(m['value'])} | {m['unit']} | {details} |")
    return [*lines, ""]


def section(name: str, results: Results, plots: dict[str, list[str]]) -> list[str]:
    lines = [f"## {TITLES.get(name, name)}", ""]
    for image in plots.get(name, []):
        lines += [f"![{name}]({image})", ""]
    for result in results:
        info = result.get("info", {})
        took = f", {info['seconds']}s" if "seconds" in info else ""
        run = f", run {result['run']}" if result.get("run", 1) > 1 else ""
        setting = f", {info['durability']}" if "durability" in info else ""
        lines += [f"### {result['backend']} — {result.get('mode', 'durable')}{setting}{run}"
                  f"{took}", ""]
        for note in result.get("notes", []):
            head, _, rest = note.partition("\n")
            lines += [f"> {head}", ""] + (["```", rest.strip(), "```", ""]
                                          if rest.strip() else [])
        lines += ratio_table(result) + metric_table(result)
    return lines


def header(results: Results, *, quick: bool, seconds: float, argv: list[str]) -> list[str]:
    info = machine_info()
    loads = [r["info"]["load"] for r in results if "load" in r.get("info", {})] + [info["load"]]
    databases = sorted({r.get("info", {}).get("database", "") for r in results} - {""})
    settings = sorted({f"{r.get('mode', 'durable')}: {r['info']['durability']}"
                       for r in results if "durability" in r.get("info", {})})
    plans = {json.dumps(e.get("plan"), sort_keys=True) for r in results
             for e in r.get("ratios", []) if e.get("plan")}
    return [
        "# Benchmark report" + (" (quick smoke run — numbers not representative)" if quick
                                else ""),
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        f"`{' '.join(argv)}` in {seconds:.0f}s on {info['cpus']} CPUs, Python "
        f"{info['python']}, {'; '.join(databases) or 'no database info'}.",
        "",
        "Every ratio compares scenarios measured **interleaved in one loop**: short slices "
        "alternating A B … B A until each scenario has spent a round's time, then per-round "
        "ratio; the median over the rounds is reported with its spread. Plans used: "
        + "; ".join(sorted(plans)) + ". Method: docs/performance.md (How we measure).",
        "",
        f"Durability as reported by the database in each pass: {'; '.join(settings) or '–'}. "
        f"Machine load (1-minute average as each benchmark started): {min(loads):.1f}–"
        f"{max(loads):.1f} on {info['cpus']} CPUs.",
        "",
    ]


def write_report(results: Results, out: Path, *, quick: bool, seconds: float,
                 argv: list[str]) -> Path:
    """Write ``report.md``, ``results.json`` and the PNG plots into ``out``; return the report."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    plots = make_plots(results, out)
    lines = header(results, quick=quick, seconds=seconds, argv=argv)
    lines += ["## Targets (PostgreSQL)", "", *target_table(results, TARGET_BACKEND), "",
              "## The same ratios on SQLite (no target)", "", *target_table(results, "sqlite"),
              ""]
    for image in plots.get("targets", []):
        lines += [f"![target ratios]({image})", ""]
    lines += ["## Every ratio", "", *every_ratio(results), ""]
    spread = run_to_run(results)
    if spread:
        lines += ["## Run to run", "", "Median of each ratio in each run of this invocation.",
                  "", *spread, ""]
    checks = checks_table(results)
    if checks:
        lines += ["## Checks", "", *checks, ""]
    for name in dict.fromkeys(r["benchmark"] for r in results):
        lines += section(name, [r for r in results if r["benchmark"] == name], plots)
    report = out / "report.md"
    report.write_text("\n".join(lines).rstrip() + "\n")
    return report


def summary_lines(results: Results) -> list[str]:
    """The target rows as plain text for the terminal."""
    lines = ["== targets (durable median [min–max] | code-only median)"]
    for backend in (TARGET_BACKEND, "sqlite"):
        for line in TARGETS:
            durable = pooled(results, target=line.id, backend=backend, mode="durable")
            code = pooled(results, target=line.id, backend=backend, mode="code-only")
            if durable is None and code is None:
                continue
            median, span, _ = fmt_spread(durable)
            tag = mark(line, durable) if backend == TARGET_BACKEND else "(no target)"
            lines.append(f"  {backend:<10} {line.path:<72} {median:>5} [{span}] | "
                         f"{fmt_spread(code)[0]:>5}  ≥ {line.required:g} {tag}")
    return lines
