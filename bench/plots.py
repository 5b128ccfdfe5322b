"""PNG plots for the report (matplotlib, Agg backend: no display needed).

Each plotter takes the results of one benchmark (all backends) and writes one PNG when there is
something to draw; ``make_plots`` returns ``{benchmark: [file names]}`` for the report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

Results = list[dict[str, Any]]


def _save(fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def plot_scale(results: Results, out: Path) -> list[str]:
    """Consume rate (plain and keyed) against ledger size, one line per backend and kind."""
    fig, ax = plt.subplots(figsize=(10, 4.2))
    drawn = False
    for result in results:
        data = result.get("series", {}).get("scale")
        if not data:
            continue
        rows = [max(r, 1) for r in data["rows"]]
        for kind, style in (("plain", "-o"), ("keyed", "--s"), ("fresh keyed", ":^")):
            if data.get(kind):
                label = "keyed, user without history" if kind == "fresh keyed" else kind
                ax.plot(rows, data[kind], style, label=f"{result['backend']} {label}")
        drawn = True
    if not drawn:
        plt.close(fig)
        return []
    ax.set_xscale("log")
    ax.set_xlabel("ledger rows of the user (log; 0 drawn at 1)")
    ax.set_ylabel("consume_quota calls / s")
    ax.set_ylim(bottom=0)
    ax.set_title("consume_quota rate as one user's ledger grows")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return [_save(fig, out, "scale.png")]


def plot_concurrency(results: Results, out: Path) -> list[str]:
    """Throughput and p99 latency against thread count, per shape."""
    series = next((r["series"]["concurrency"] for r in results
                   if r.get("series", {}).get("concurrency")), None)
    if not series:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for (shape, data), color in zip(series.items(), ("tab:blue", "tab:orange"), strict=False):
        left.plot(data["threads"], data["throughput"], "-o", color=color, label=shape)
        right.plot(data["threads"], data["p50_ms"], "-o", color=color, label=f"{shape} p50")
        right.plot(data["threads"], data["p99_ms"], "--s", color=color, label=f"{shape} p99")
    left.set(xlabel="threads", ylabel="consume_quota / s (all threads)",
             title="Throughput (PostgreSQL)")
    right.set(xlabel="threads", ylabel="latency per call, ms", title="Latency")
    for ax in (left, right):
        ax.set_xticks([1, 2, 4, 8])
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return [_save(fig, out, "concurrency.png")]


def plot_bars(results: Results, out: Path, *, name: str, title: str,
              unit: str) -> list[str]:
    """Horizontal bars of every metric with ``unit`` (rates), grouped by backend."""
    labels: list[str] = []
    values: list[float] = []
    for result in results:
        for metric in result.get("metrics", []):
            if metric.get("unit") in unit.split("|") and metric.get("value"):
                labels.append(f"{result['backend']}: {metric['name']}")
                values.append(float(metric["value"]))
    if not values:
        return []
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(values) + 1.4))
    colors = ["tab:gray" if "raw" in label.lower() or "bare" in label.lower() else "tab:blue"
              for label in labels]
    bars = ax.barh(labels, values, color=colors)
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=7, padding=2)
    ax.invert_yaxis()
    if max(values) / min(values) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(unit.replace("|", " or ") + " (grey: baseline)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(axis="y", labelsize=8)
    return [_save(fig, out, name)]


PLOTTERS: dict[str, Callable[[Results, Path], list[str]]] = {
    "scale": plot_scale,
    "concurrency": plot_concurrency,
    "ledger": lambda r, o: plot_bars(r, o, name="ledger.png", unit="ops/s",
                                     title="Ledger services vs raw SQL (higher is better)"),
    "grants": lambda r, o: plot_bars(r, o, name="grants.png", unit="ops/s",
                                     title="grant_offer / exchange vs raw SQL"),
    "rest": lambda r, o: plot_bars(r, o, name="rest.png", unit="req/s|ops/s",
                                   title="REST (2 uvicorn workers) vs in-process service"),
    "bot": lambda r, o: plot_bars(r, o, name="bot.png", unit="updates/s|ops/s",
                                  title="Bot updates per second"),
    "purchase": lambda r, o: plot_bars(r, o, name="purchase.png", unit="updates/s",
                                       title="Purchase flow vs bare aiogram (updates/s)"),
}


def make_plots(results: Results, out: Path) -> dict[str, list[str]]:
    """Draw every plot the results allow; return the PNG names per benchmark."""
    drawn: dict[str, list[str]] = {}
    for name, plotter in PLOTTERS.items():
        mine = [r for r in results if r.get("benchmark") == name]
        if mine:
            drawn[name] = plotter(mine, out)
    return drawn
