"""PNG plots for the report (matplotlib, Agg backend: no display needed).

* ``targets.png`` — every target ratio: median and min–max per backend and durability mode,
  with the required value;
* ``batches.png``, ``rows.png``, ``users.png`` — the scaling curves (``bench/scale``);
* one bar chart of median rates (min–max whiskers) per other benchmark.

``make_plots`` returns ``{section: [file names]}`` for the report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.targets import TARGETS

Results = list[dict[str, Any]]
STYLES = {("postgresql", "durable"): ("tab:blue", "o"),
          ("postgresql", "code-only"): ("tab:cyan", "s"),
          ("sqlite", "durable"): ("tab:orange", "^"),
          ("sqlite", "code-only"): ("gold", "v")}


def _save(fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def plot_targets(results: Results, out: Path) -> list[str]:
    """Median and min–max of each target ratio per backend and mode; a bar at the target."""
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(TARGETS) + 1.5))
    drawn = False
    for offset, (key, (color, marker)) in enumerate(STYLES.items()):
        for row, line in enumerate(TARGETS):
            values = [v for r in results if (r["backend"], r.get("mode", "durable")) == key
                      for e in r.get("ratios", []) if e.get("target") == line.id
                      for v in e["values"]]
            if not values:
                continue
            values.sort()
            middle = values[len(values) // 2]
            y = row + (offset - 1.5) * 0.15
            ax.errorbar([middle], [y], xerr=[[middle - values[0]], [values[-1] - middle]],
                        fmt=marker, color=color, capsize=3, label=" ".join(key))
            drawn = True
    if not drawn:
        plt.close(fig)
        return []
    for row, line in enumerate(TARGETS):
        ax.plot([line.required] * 2, [row - 0.4, row + 0.4], color="black", linewidth=2)
    ax.set_yticks(range(len(TARGETS)), [line.path.replace("`", "") for line in TARGETS],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ratio (log; black bar: target; marker: median, whiskers: min–max of rounds)")
    ax.grid(axis="x", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.12), ncol=4)
    return [_save(fig, out, "targets.png")]


def _band(ax: Any, xs: list[Any], mid: list[float], low: list[float], high: list[float],
          label: str, style: str) -> None:
    line = ax.plot(xs, mid, style, label=label)[0]
    ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15)


def plot_curves(results: Results, out: Path) -> list[str]:
    """The three scaling curves, one PNG each, one line per backend (durable pass)."""
    scale = [r for r in results
             if r.get("mode", "durable") == "durable" and r.get("run", 1) == 1]
    drawn: list[str] = []
    curves = [(r["backend"], r["series"]) for r in scale if r.get("series")]
    if any("batches" in s for _, s in curves):
        fig, ax = plt.subplots(figsize=(8, 4))
        for backend, s in curves:
            if "batches" in s:
                b = s["batches"]
                _band(ax, b["batches"], b["consume ratio"], b["consume low"], b["consume high"],
                      f"{backend} consume", "-o")
                _band(ax, b["batches"], b["check ratio"], b["check low"], b["check high"],
                      f"{backend} check_quota", "--s")
        ax.set(xscale="log", xlabel="spendable batches held by the user (log)",
               ylabel="rate / rate with 1 batch", title="Batches per user")
        _finish(ax)
        drawn.append(_save(fig, out, "batches.png"))
    if any("rows" in s for _, s in curves):
        fig, ax = plt.subplots(figsize=(8, 4))
        for backend, s in curves:
            if "rows" in s:
                rows = s["rows"]
                _band(ax, [max(r, 1) for r in rows["rows"]], rows["ratio"], rows["ratio low"],
                      rows["ratio high"], f"{backend} keyed consume", "-o")
        ax.set(xscale="log", xlabel="ledger rows of the user (log; 0 drawn at 1)",
               ylabel="rate / rate of a user without history", title="Ledger rows per user")
        _finish(ax)
        drawn.append(_save(fig, out, "rows.png"))
    if any("users" in s for _, s in curves):
        drawn.append(plot_users(curves, out))
    return drawn


def plot_users(curves: list[tuple[str, dict[str, Any]]], out: Path) -> str:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for backend, s in curves:
        if "users" not in s:
            continue
        u = s["users"]
        left.plot(u["users"], u["rss_mb"], "-o", label=f"{backend} RSS")
        if u.get("cache bound"):
            left.axvline(u["cache bound"], color="grey", linestyle=":",
                         label=f"identity cache bound ({u['cache bound']:,})")
        for name in ("kit bot, one cached user", "kit bot, random seen user",
                     "consume_quota, random seen user", "bare aiogram handler"):
            right.plot(u["compared at"], [rates.get(name, 0) for rates in u["rates"]], "-o",
                       label=f"{backend} {name}")
    left.set(xscale="log", xlabel="distinct users seen by the bot (log)",
             ylabel="process RSS, MiB", title="Memory of a bot (identity cache bounded)")
    right.set(xscale="log", yscale="log", xlabel="users (log)", ylabel="per second (log)",
              title="Rates as users grow")
    for ax in (left, right):
        _finish(ax)
    return _save(fig, out, "users.png")


def _finish(ax: Any) -> None:
    if ax.get_yscale() != "log":
        ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_rates(results: Results, out: Path, name: str) -> list[str]:
    """Median rate of every scenario (durable pass) with min–max whiskers."""
    rows = [(f"{r['backend']}: {m['name']}", m) for r in results
            if r.get("mode", "durable") == "durable" and r.get("run", 1) == 1
            for m in r.get("metrics", []) if "low" in m and m.get("value")]
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(rows) + 1.4))
    values = [m["value"] for _, m in rows]
    # The whiskers span the rounds' min–max; a median of ratios can sit outside the min–max of
    # the rates it came from, so a whisker is never drawn below zero length.
    errors = [[max(0.0, m["value"] - m["low"]) for _, m in rows],
              [max(0.0, m["high"] - m["value"]) for _, m in rows]]
    ax.barh([label for label, _ in rows], values, xerr=errors, capsize=2, color="tab:blue")
    ax.invert_yaxis()
    if max(values) / max(min(values), 1e-9) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("per second (median of rounds; whiskers: min–max)")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    return [_save(fig, out, f"{name}.png")]


PLOTTERS: dict[str, Callable[[Results, Path], list[str]]] = {
    "scale": plot_curves,
    **{name: (lambda r, o, n=name: plot_rates(r, o, n))
       for name in ("ledger", "grants", "concurrency", "rest", "bot", "purchase")},
}


def make_plots(results: Results, out: Path) -> dict[str, list[str]]:
    """Draw every plot the results allow; return the PNG names per report section."""
    drawn: dict[str, list[str]] = {"targets": plot_targets(results, out)}
    for name, plotter in PLOTTERS.items():
        mine = [r for r in results if r.get("benchmark") == name]
        if mine:
            drawn[name] = plotter(mine, out)
    return drawn
