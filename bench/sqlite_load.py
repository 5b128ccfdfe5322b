"""Load on the embedded default: POST /wallet/consume at concurrency 16 against the demo's SQLite.

``python -m bench --only sqlite_load`` serves the demo project's ASGI application with uvicorn
(one worker, as ``python3 dev.py demo`` does) on 127.0.0.1, using the demo's own settings module
with ``DATABASE_URL`` pointing at this benchmark's SQLite file, and sends 2,000 consumes (200 with
``--quick``), 16 in flight, from an aiohttp client. Under ASGI every request runs in its own
thread with its own connection, so the requests really are concurrent SQLite writers.

Measured per variant: answers other than 200 and whether the units spent equal the 200 answers.

* ``demo settings`` — the options the demo ships (``transaction_mode="IMMEDIATE"``, a busy
  timeout, WAL). Target: **0** answers other than 200, ledger exact.
* ``Django SQLite defaults`` — the same server with ``OPTIONS = {}`` (what 0.3.0 shipped), for
  comparison; no target (its failures are the point).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import (
    API_TOKEN,
    ROOT,
    Recorder,
    credit,
    ledger_consistent,
    make_product,
    make_users,
    remaining_total,
)
from bench.progress import Progress
from bench.rest import CONCURRENCY, Load, drive, free_port, record_load, wait_ready

KEY = "LOAD_CREDITS"
USERS = 40
SETTINGS = """
from examples.demo_project.settings import *  # noqa: F403

{override}
LOGGING = {{
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {{"console": {{"class": "logging.StreamHandler"}}}},
    "loggers": {{"django.request": {{"handlers": ["console"], "level": "ERROR"}}}},
}}
"""
#: Variant name → extra settings lines (none: the demo's settings as shipped).
VARIANTS: dict[str, str] = {
    "demo settings": "",
    "Django SQLite defaults": 'DATABASES["default"]["OPTIONS"] = {}  # noqa: F405',
}


@contextmanager
def demo_server(database_url: str, override: str) -> Iterator[tuple[str, Path]]:
    """uvicorn with one worker serving the demo on a free loopback port; (base URL, log)."""
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="bench_sqlite_load_"))
    log = folder / "uvicorn.log"
    (folder / "bench_sqlite_settings.py").write_text(SETTINGS.format(override=override))
    env = {**os.environ, "DATABASE_URL": database_url, "BILLABLE_API_TOKEN": API_TOKEN,
           "PYTHONPATH": f"{folder}{os.pathsep}{ROOT}", "DJANGO_DEBUG": "0",
           "DJANGO_SETTINGS_MODULE": "bench_sqlite_settings"}
    command = [sys.executable, "-m", "uvicorn", "examples.demo_project.asgi:application",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
               "--no-access-log"]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=sink)
    try:
        yield f"http://127.0.0.1:{port}", log
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _load(base: str, ids: list[Any], *, total: int, tick: Callable[[], None]
                ) -> Load | None:
    if await wait_ready(base) != 200:
        return None

    def consume(i: int) -> tuple[str, str, Any]:
        return "POST", "/wallet/consume", {"user_id": ids[i % len(ids)], "product_key": KEY,
                                           "action_type": "usage"}

    return await drive(base, consume, total=total, seconds=600.0, tick=tick)


def load_variant(rec: Recorder, variant: str, ids: list[Any], *, total: int,
                 tick: Callable[[], None]) -> None:
    """Serve, load and record one variant."""
    from django.db import connections

    connections.close_all()  # the server is the only writer while it runs
    before = remaining_total(ids)
    with demo_server(os.environ["BENCH_DATABASE_URL"], VARIANTS[variant]) as (base, log):
        load = asyncio.run(_load(base, ids, total=total, tick=tick))
        server_log = log.read_text(errors="replace")
    if load is None:
        rec.note(f"{variant}: the demo did not answer GET /catalog with 200; server log:\n"
                 + server_log[-1500:])
        rec.target(f"{variant}: answers other than 200", value=None, required=0, at_most=True)
        return
    failures = sum(n for code, n in load.statuses.items() if code != 200)
    spent = before - remaining_total(ids)
    record_load(rec, f"{variant}: POST /wallet/consume", load)
    rec.metric(f"{variant}: answers other than 200", failures, "requests",
               statuses={str(k): v for k, v in sorted(load.statuses.items())})
    rec.metric(f"{variant}: units spent minus 200 answers", spent - load.ok, "units",
               note="0 = exact")
    exact = spent == load.ok and ledger_consistent(ids)
    if variant == "demo settings":
        rec.target(f"{variant}: answers other than 200 ({total} consumes, {CONCURRENCY} "
                   "in flight)", value=failures, required=0, at_most=True, unit="requests")
        rec.target(f"{variant}: ledger exact (1 = yes)", value=1.0 if exact else 0.0,
                   required=1.0)
    if failures:
        rec.note(f"{variant}: {failures} of {total} requests failed; server log tail:\n"
                 + server_log[-1200:])


def run(rec: Recorder, *, quick: bool) -> None:
    """Seed users with credit, then load the demo server once per settings variant."""
    from django.db import connection

    if connection.vendor != "sqlite":
        rec.note("skipped: this benchmark is about the embedded SQLite default")
        return
    total = 200 if quick else 2000
    users = make_users(USERS, prefix="load")
    product = make_product(KEY)
    for user in users:
        credit(user, product, 10**6)
    ids = [u.id for u in users]
    with Progress("sqlite_load [sqlite]", total=len(VARIANTS) * (total // 50 + 1)) as bar:
        for variant in VARIANTS:
            load_variant(rec, variant, ids, total=total, tick=bar.tick)
    rec.info["requests_per_variant"] = total
    rec.info["concurrency"] = CONCURRENCY
