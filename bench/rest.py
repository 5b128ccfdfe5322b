"""REST under load: POST /wallet/consume and GET /catalog served by uvicorn with 2 workers.

The demo project's ASGI application (``examples.demo_project.asgi:application``) is started on
127.0.0.1 against this benchmark's PostgreSQL database; an aiohttp client on the same machine
keeps a bounded number of requests in flight, for a bounded count and time. The consume rate is
compared with ``TransactionService.consume_quota`` called in-process (one thread, same database,
same run). Target: REST consume ≥ 40% of the in-process service rate.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import (
    API_TOKEN,
    ROOT,
    Recorder,
    credit,
    make_product,
    make_users,
    measure_rate,
    percentile,
    ratio,
    remaining_total,
    service,
)
from bench.progress import Progress

KEY = "REST_CREDITS"
PREFIX = "/api/v1/billing"
CONCURRENCY = 16
USERS = 40


#: The demo project's settings plus a console log of server errors (DEBUG stays off). The
#: database connection policy is the variant under test (see ``VARIANTS``).
SETTINGS = """
from examples.demo_project.settings import *  # noqa: F403

DATABASES["default"].update({database})  # noqa: F405
LOGGING = {{
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {{"console": {{"class": "logging.StreamHandler"}}}},
    "loggers": {{"django.request": {{"handlers": ["console"], "level": "ERROR"}}}},
}}
"""

#: Connection policies of the server. Under ASGI, Django runs each request's sync part in an
#: executor thread of its own, and connections are per thread: ``CONN_MAX_AGE > 0`` leaves one
#: open connection behind per request thread (it exhausted PostgreSQL's 100 connections: "too
#: many clients already" → 500s), ``CONN_MAX_AGE = 0`` opens and closes one per request, and a
#: psycopg pool (Django ≥ 5.1, ``psycopg-pool``) hands threads pooled connections.
VARIANTS: dict[str, dict[str, Any]] = {
    "no persistent connections": {"CONN_MAX_AGE": 0},
    "psycopg pool": {"CONN_MAX_AGE": 0,
                     "OPTIONS": {"pool": {"min_size": 4, "max_size": 12, "timeout": 20}}},
}


@dataclass
class Load:
    """Outcome of one load phase."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return self.statuses[200]

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def uvicorn_server(database_url: str, database: dict[str, Any]) -> Iterator[tuple[str, Path]]:
    """Start uvicorn (2 workers) on a free loopback port; yield (base URL, log file)."""
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="bench_rest_"))
    log = folder / "uvicorn.log"
    (folder / "bench_rest_settings.py").write_text(SETTINGS.format(database=repr(database)))
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_DEBUG": "0",
           "BILLABLE_API_TOKEN": API_TOKEN, "PYTHONPATH": f"{folder}{os.pathsep}{ROOT}",
           "DJANGO_SETTINGS_MODULE": "bench_rest_settings"}
    command = [sys.executable, "-m", "uvicorn", "examples.demo_project.asgi:application",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
               "--log-level", "warning", "--no-access-log"]
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


async def wait_ready(base: str, *, within: float = 40.0) -> int:
    """Poll GET /catalog until the server answers; return its status (0 = never answered)."""
    import aiohttp

    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(headers=_headers()) as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{base}{PREFIX}/catalog") as response:
                    await response.read()
                    return response.status
            except aiohttp.ClientError:
                await asyncio.sleep(0.3)
    return 0


async def drive(base: str, make: Callable[[int], tuple[str, str, Any]], *, total: int,
                seconds: float, tick: Callable[[], None]) -> Load:
    """Send up to ``total`` requests (``CONCURRENCY`` in flight) for at most ``seconds``."""
    import aiohttp

    load = Load()
    counter = iter(range(total))
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)

    async def client(session: aiohttp.ClientSession) -> None:
        for index in counter:
            if time.monotonic() > deadline:
                return
            method, path, body = make(index)
            started = time.perf_counter()
            try:
                async with session.request(method, f"{base}{PREFIX}{path}", json=body) as resp:
                    await resp.read()
                    load.statuses[resp.status] += 1
            except aiohttp.ClientError:
                load.statuses[0] += 1
            load.latencies.append(time.perf_counter() - started)
            if index % 50 == 0:
                tick()

    async with aiohttp.ClientSession(headers=_headers(), connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(CONCURRENCY)))
        load.seconds = time.perf_counter() - started
    return load


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKEN}"}


def seed_catalog(offers: int = 30) -> None:
    """A catalog of ``offers`` active offers with two items each (what GET /catalog returns)."""
    from billable.models import Offer, OfferItem

    first, second = make_product("REST_TOKENS"), make_product("REST_MINUTES")
    for n in range(offers):
        offer = Offer.objects.create(sku=f"REST_PACK_{n}", name=f"Pack {n}",
                                     price=Decimal("4.99") + n, currency="USD")
        OfferItem.objects.create(offer=offer, product=first, quantity=10 + n)
        OfferItem.objects.create(offer=offer, product=second, quantity=60, period_unit="days",
                                 period_value=30)


def record_load(rec: Recorder, name: str, load: Load) -> None:
    rec.metric(f"{name}: requests/s", load.rate, "req/s",
               p50_ms=round(percentile(load.latencies, 50) * 1000, 2),
               p99_ms=round(percentile(load.latencies, 99) * 1000, 2),
               requests=sum(load.statuses.values()),
               statuses={str(k): v for k, v in sorted(load.statuses.items())})
    rec.series.setdefault("rest", {})[name] = {
        "rate": load.rate, "p50_ms": percentile(load.latencies, 50) * 1000,
        "p99_ms": percentile(load.latencies, 99) * 1000}


def pool_available() -> bool:
    try:
        import psycopg_pool  # noqa: F401
    except ImportError:
        return False
    return True


def serve_and_load(rec: Recorder, variant: str, ids: list[Any], *, local: float, quick: bool,
                   tick: Callable[[], None]) -> None:
    """One server variant: start it, load it, record its numbers and targets."""
    total, seconds = (200, 8.0) if quick else (4000, 20.0)
    before = remaining_total(ids)
    with uvicorn_server(os.environ["BENCH_DATABASE_URL"], VARIANTS[variant]) as (base, log):
        loads = asyncio.run(_phases(base, ids, total=total, seconds=seconds, tick=tick))
        server_log = log.read_text(errors="replace")[-1500:]
    if loads is None:
        rec.note(f"{variant}: the REST API did not answer GET /catalog with 200; server log:\n"
                 + server_log)
        rec.target(f"{variant}: REST consume / in-process consume_quota", value=None,
                   required=0.4)
        return
    warmup, consume_load, catalog_load = loads
    failures = sum(n for load in loads for code, n in load.statuses.items() if code != 200)
    if failures:
        rec.note(f"{variant}: {failures} requests did not get 200; server log tail:\n"
                 + server_log)
    record_load(rec, f"{variant}: POST /wallet/consume", consume_load)
    record_load(rec, f"{variant}: GET /catalog (30 offers)", catalog_load)
    spent = before - remaining_total(ids)
    rec.metric(f"{variant}: units spent minus 200 answers to consume",
               spent - warmup.ok - consume_load.ok, "units", note="0 = exact")
    rec.target(f"{variant}: answers other than 200", value=failures, required=0,
               at_most=True, unit="requests")
    rec.target(f"{variant}: REST consume / in-process consume_quota",
               value=ratio(consume_load.rate, local), required=0.4,
               why="per request: a new executor thread and DB connection, the user lookup, "
               "auth, JSON, the ASGI hop")


def run(rec: Recorder, *, quick: bool) -> None:
    """In-process rate first, then the same work over HTTP per server variant."""
    from django.db import connection

    if connection.vendor != "postgresql":
        rec.note("skipped: the REST benchmark runs on PostgreSQL (2 uvicorn workers)")
        return
    consume = service("consume_quota")
    users = make_users(USERS, prefix="rest")
    product = make_product(KEY)
    for user in users:
        credit(user, product, 10**6)
    ids = [u.id for u in users]
    seed_catalog()
    variants = [v for v in VARIANTS if v != "psycopg pool" or pool_available()]
    total = 200 if quick else 4000
    with Progress("rest [postgresql]", total=3 + len(variants) * (2 + 2 * total // 50)) as bar:
        local = measure_rate(lambda i: consume(ids[i % USERS], KEY), count=2000, repeats=3,
                             tick=bar.tick)
        rec.metric("in-process consume_quota (1 thread)", local, "ops/s")
        rec.series.setdefault("rest", {})["in-process consume_quota"] = {"rate": local}
        for variant in variants:
            serve_and_load(rec, variant, ids, local=local, quick=quick, tick=bar.tick)
    if len(variants) < len(VARIANTS):
        rec.note("psycopg pool variant skipped: psycopg-pool is not installed")


async def _phases(base: str, ids: list[Any], *, total: int, seconds: float,
                  tick: Callable[[], None]) -> tuple[Load, Load, Load] | None:
    if await wait_ready(base) != 200:
        return None

    def consume(i: int) -> tuple[str, str, Any]:
        return "POST", "/wallet/consume", {"user_id": ids[i % len(ids)], "product_key": KEY,
                                           "action_type": "usage"}

    def catalog(i: int) -> tuple[str, str, Any]:
        return "GET", "/catalog", None

    warmup = await drive(base, consume, total=CONCURRENCY * 4, seconds=seconds,
                         tick=lambda: None)
    tick()
    consume_load = await drive(base, consume, total=total, seconds=seconds, tick=tick)
    catalog_load = await drive(base, catalog, total=total, seconds=seconds, tick=tick)
    return warmup, consume_load, catalog_load
