"""Run the benchmark suite: ``python -m bench [--quick] [--only A,B] [--backend B] [--runs N]``.

Every benchmark runs in a process of its own per database backend and durability mode (Django
is configured once per process), on a database copied from a migrated template and dropped
afterwards. The processes are forked from this one after it has imported the heavy libraries
that need no settings (aiogram builds ~600 pydantic models on import), so each starts in
milliseconds instead of seconds. Benchmarks that measure a line of the target table
(``bench.targets``) run twice: durable, then code-only (commits not waiting for the disk).

Results are collected as JSON in ``<out>/data/`` and rendered to ``<out>/report.md`` with PNG
plots beside it. PostgreSQL is taken from ``BILLABLE_PG_URL`` (or a postgres ``DATABASE_URL``),
default ``postgres://postgres@127.0.0.1:5432/postgres``; without a server the PostgreSQL runs
are skipped and the report says so. ``--runs N`` repeats the selection N times and adds the
run-to-run spread of every ratio to the report.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import sys
import time
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

from bench.common import RESULTS, migrate_template, run_worker
from bench.databases import postgres_available, templates
from bench.report import summary_lines, write_report
from bench.targets import CODE_ONLY_BENCHMARKS

#: In-process benchmarks (``bench/<name>.py`` with ``run(recorder, quick=...)``) and backends.
INTERNAL: dict[str, tuple[str, ...]] = {
    "grants": ("sqlite", "postgresql"),
    "scale": ("sqlite", "postgresql"),
    "concurrency": ("sqlite", "postgresql"),
    "rest": ("sqlite", "postgresql"),
    "bot": ("sqlite", "postgresql"),
    "purchase": ("sqlite", "postgresql"),
    "ledger": ("sqlite", "postgresql"),
    "sqlite_load": ("sqlite",),
}
ORDER = ("ledger", "grants", "scale", "concurrency", "rest", "bot", "purchase", "sqlite_load")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: every row, tiny rounds, numbers not representative")
    parser.add_argument("--only", action="append", default=[],
                        help=f"comma-separated subset of: {', '.join(ORDER)}")
    parser.add_argument("--backend", choices=("all", "sqlite", "postgresql"), default="all")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--runs", type=int, default=1,
                        help="repeat the selection N times (run-to-run spread in the report)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds allowed per benchmark subprocess")
    args = parser.parse_args(argv)
    names = [n.strip() for chunk in args.only for n in chunk.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ORDER))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.names = [n for n in ORDER if n in names] if names else list(ORDER)
    return args


#: Libraries imported before forking the workers: slow to import, independent of settings.
PRELOAD = ("aiogram", "aiogram.types", "aiogram.methods", "aiohttp", "psycopg")


def preload() -> None:
    for name in PRELOAD:
        try:
            import_module(name)
        except ImportError:  # an optional extra is missing: its benchmarks will say so
            pass


def forked(target: Callable[..., int], *args: Any, timeout: float, **kwargs: Any
           ) -> int | None:
    """Run ``target(*args, **kwargs)`` in a forked process; its exit code, None on timeout."""
    process = multiprocessing.get_context("fork").Process(
        target=_exit_with, args=(target, args, kwargs), daemon=False)
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join()
        return None
    return process.exitcode


def _exit_with(target: Callable[..., int], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> None:
    # What the parent imported is never garbage: keep the collector from walking it again and
    # again while the worker measures (a forked process would otherwise pay for the parent's
    # heap on every full collection).
    gc.freeze()
    sys.exit(target(*args, **kwargs))


def migrate(url: str) -> bool:
    """Fill the template database at ``url`` in a forked process; True when it worked."""
    return forked(migrate_template, url, timeout=600) == 0


def run_internal(name: str, backend: str, mode: str, number: int, args: argparse.Namespace,
                 template: str | None) -> dict[str, Any]:
    """Run ``bench.<name>`` on ``backend`` in ``mode`` in a forked process; load its result."""
    stem = f"{name}-{backend}" + ("-code-only" if mode == "code-only" else "") + (
        f"-run{number}" if args.runs > 1 else "")
    out = args.out / "data" / f"{stem}.json"
    out.unlink(missing_ok=True)
    code = forked(run_worker, name, backend, out, timeout=args.timeout, quick=args.quick,
                  mode=mode, template=template)
    if code is None:
        data = failed(name, backend, f"timed out after {args.timeout:.0f}s")
    elif not out.exists():
        data = failed(name, backend, "the worker wrote no result (crashed before the end)")
    else:
        data = json.loads(out.read_text())
    data.update(mode=mode, run=number)
    return data


def failed(name: str, backend: str, why: str) -> dict[str, Any]:
    return {"benchmark": name, "backend": backend, "metrics": [], "targets": [], "ratios": [],
            "series": {}, "notes": [f"FAILED: {why}"], "info": {}}


def skipped(name: str, backend: str, why: str) -> dict[str, Any]:
    return {**failed(name, backend, why), "notes": [f"skipped: {why}"]}


def modes(name: str) -> tuple[str, ...]:
    return ("durable", "code-only") if name in CODE_ONLY_BENCHMARKS else ("durable",)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    preload()
    has_pg = postgres_available()
    wanted = [b for b in ("sqlite", "postgresql") if args.backend in ("all", b)
              and any(b in INTERNAL[n] for n in args.names)]
    started = time.time()
    results: list[dict[str, Any]] = []
    with templates([b for b in wanted if b != "postgresql" or has_pg], migrate) as made:
        for number in range(1, args.runs + 1):
            for name in args.names:
                sys.stderr.write(f"== {name}" + (f" (run {number})" if args.runs > 1 else "")
                                 + "\n")
                for backend in (b for b in INTERNAL[name] if b in wanted):
                    if backend == "postgresql" and not has_pg:
                        results.append(skipped(name, backend, "PostgreSQL is not reachable"))
                        continue
                    results += [run_internal(name, backend, mode, number, args,
                                             made.get(backend)) for mode in modes(name)]
    report = write_report(results, args.out, quick=args.quick, seconds=time.time() - started,
                          argv=["python", "-m", "bench", *argv])
    for line in summary_lines(results):
        sys.stderr.write(line + "\n")
    sys.stderr.write(f"== report: {report}\n")
    broken = [r for r in results if any(n.startswith("FAILED") for n in r.get("notes", []))]
    sys.stderr.write(f"== benchmarks failed: {len(broken)}\n")
    return 1 if broken else 0


def run_alone(name: str, argv: list[str]) -> int:
    """``python bench/<name>.py [flags]``: that benchmark alone, its report in a temporary
    directory (``--out`` overrides), the target rows printed."""
    import tempfile

    return main(["--only", name, "--out", tempfile.mkdtemp(prefix=f"bench_{name}_"), *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
