"""REST against in-process: ``POST /wallet/consume`` and ``consume_quota``, interleaved.

The demo project's ASGI application (``examples.demo_project.asgi:application``: the API on
billable's lean ASGI stack, :func:`billable.api.asgi.lean_api`) is served by uvicorn (with
httptools when installed; the report notes which parser ran) on 127.0.0.1 against this
benchmark's database, with the demo's own settings (on PostgreSQL its psycopg pool; on SQLite
the benchmark's connection options, which carry the durability mode). One uvicorn worker, as the
demo runs: with ``--workers N`` uvicorn (0.54) hands its workers a listening socket whose
accepted connections never get ``TCP_NODELAY``, so every keep-alive request after the first
waits ~40 ms for the client's delayed ACK (Kludex/uvicorn#3149) — a measurement of Linux's
timers, not of this code. One comparison, in one loop of the instrument:

* **REST consume** — one request at a time on a keep-alive connection (``http.client``), so a
  request's cost is compared with a call's cost (target line ``rest``);
* **in-process consume_quota** — the same consume called in this process, one thread;
* **REST consume, 16 in flight** — aiohttp keeping 16 requests in flight: the server's
  throughput under concurrent load (for reference; no target);
* **REST 401, no database** — the same request, one at a time, with a token that is neither the
  settings token nor shaped like a stored key: HTTP, uvicorn, Django's ASGI handler with its
  request signals, Ninja and the auth, and no query — the server stack's fixed cost per request
  (for reference; no target). Beside the in-process rate it bounds the target line: while the
  consume runs the same way on both sides, REST / in-process stays below
  ``floor / (floor + in-process)`` in rates, whatever billable's own code costs. On PostgreSQL
  the endpoint runs a covered consume as one statement on the async pool in the event loop
  (``billable.ledger.fastconsume``) while the in-process side calls the sync ``consume_quota``,
  so the REST side can pass that bound.

Every consume answer other than 200 is counted (target: none), every floor answer must be 401,
and the units spent must equal the 200 answers plus the in-process successes.
"""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import json
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
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench.common import (
    API_TOKEN,
    ROOT,
    Recorder,
    credit,
    make_product,
    make_users,
    percentile,
    remaining_total,
    service,
)
from bench.databases import sqlite_options
from bench.interleave import AsyncScenarios, Plan, interleave, repeat
from bench.progress import Progress

KEY = "REST_CREDITS"
#: The floor's bearer token: not ``API_TOKEN`` and not shaped like a stored key (no query).
UNKNOWN_TOKEN = "not-a-billing-token"
PREFIX = "/api/v1/billing"
CONCURRENCY = 16
USERS = 40

#: The demo project's settings, a console log of server errors (DEBUG stays off) and, on SQLite,
#: the benchmark's connection options (WAL, queued writers, the durability mode's sync level).
SETTINGS = """
from examples.demo_project.settings import *  # noqa: F403

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    DATABASES["default"]["OPTIONS"] = {sqlite!r}  # noqa: F405
LOGGING = {{
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {{"console": {{"class": "logging.StreamHandler"}}}},
    "loggers": {{"django.request": {{"handlers": ["console"], "level": "ERROR"}}}},
}}
"""


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


def http_parser() -> str:
    """The HTTP implementation uvicorn picks (``--http auto``): httptools when installed (as
    ``uvicorn[standard]`` and the ``dev`` extra install it), else h11, pure Python and slower
    per request — a cost of the server, not of billable."""
    if importlib.util.find_spec("httptools") is not None:
        return "httptools"
    return "h11 (httptools not installed)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def uvicorn_server(database_url: str, *, workers: int = 1) -> Iterator[tuple[str, Path]]:
    """Start uvicorn on a free loopback port; yield (base URL, log file)."""
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="bench_rest_"))
    log = folder / "uvicorn.log"
    (folder / "bench_rest_settings.py").write_text(SETTINGS.format(sqlite=sqlite_options()))
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_DEBUG": "0",
           "BILLABLE_API_TOKEN": API_TOKEN, "PYTHONPATH": f"{folder}{os.pathsep}{ROOT}",
           "DJANGO_SETTINGS_MODULE": "bench_rest_settings"}
    command = [sys.executable, "-m", "uvicorn", "examples.demo_project.asgi:application",
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
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


def _headers(token: str = API_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def record_load(rec: Recorder, name: str, load: Load) -> None:
    rec.metric(f"{name}: requests/s", load.rate, "req/s",
               p50_ms=round(percentile(load.latencies, 50) * 1000, 2),
               p99_ms=round(percentile(load.latencies, 99) * 1000, 2),
               requests=sum(load.statuses.values()),
               statuses={str(k): v for k, v in sorted(load.statuses.items())})
    rec.series.setdefault("rest", {})[name] = {
        "rate": load.rate, "p50_ms": percentile(load.latencies, 50) * 1000,
        "p99_ms": percentile(load.latencies, 99) * 1000}



def consume_body(user_id: Any) -> dict[str, Any]:
    return {"user_id": user_id, "product_key": KEY, "action_type": "usage"}


class Sequential:
    """One keep-alive HTTP connection sending one ``POST /wallet/consume`` at a time."""

    def __init__(self, base: str, ids: list[Any], *, token: str = API_TOKEN) -> None:
        parsed = urlparse(base)
        self.connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1",
                                                     parsed.port, timeout=30)
        self.headers = {**_headers(token), "Content-Type": "application/json"}
        self.ids, self.sent = ids, 0
        self.statuses: Counter[int] = Counter()

    def _connect(self) -> None:
        """Open the connection with Nagle's algorithm off, as browsers and aiohttp do: a
        request must not wait for the server's delayed ACK of the previous one."""
        self.connection.connect()
        self.connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def consume(self) -> None:
        body = json.dumps(consume_body(self.ids[self.sent % len(self.ids)]))
        self.sent += 1
        try:
            if self.connection.sock is None:
                self._connect()
            self.connection.request("POST", f"{PREFIX}/wallet/consume", body, self.headers)
            response = self.connection.getresponse()
            response.read()
            self.statuses[response.status] += 1
        except (OSError, http.client.HTTPException):
            self.statuses[0] += 1
            self.connection.close()


class Swarm:
    """``CONCURRENCY`` aiohttp clients sending ``POST /wallet/consume`` until a slice ends."""

    def __init__(self, runner: AsyncScenarios, base: str, ids: list[Any]) -> None:
        import aiohttp

        self.runner, self.base, self.ids, self.sent = runner, base, ids, 0
        self.statuses: Counter[int] = Counter()

        async def open_session() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(
                headers=_headers(), connector=aiohttp.TCPConnector(limit=CONCURRENCY))

        self.session = runner.run(open_session())

    def __call__(self, seconds: float) -> int:
        before = self.statuses[200]
        self.runner.run(self._slice(seconds))
        return self.statuses[200] - before

    async def _slice(self, seconds: float) -> None:
        import aiohttp

        deadline = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                body = consume_body(self.ids[self.sent % len(self.ids)])
                self.sent += 1
                try:
                    async with self.session.post(f"{self.base}{PREFIX}/wallet/consume",
                                                 json=body) as response:
                        await response.read()
                        self.statuses[response.status] += 1
                except aiohttp.ClientError:
                    self.statuses[0] += 1

        await asyncio.gather(*(client() for _ in range(CONCURRENCY)))

    def close(self) -> None:
        self.runner.run(self.session.close())


def run(rec: Recorder, *, quick: bool) -> None:
    """Serve the demo, then measure REST and in-process consumption in one loop."""
    consume = service("consume_quota")
    users = make_users(USERS, prefix="rest")
    product = make_product(KEY)
    for user in users:
        credit(user, product, 10**9)
    ids = [u.id for u in users]
    local = Counter[bool]()
    plan = Plan.for_run(quick=quick)

    def in_process() -> None:
        local[bool(consume(ids[sum(local.values()) % USERS], KEY).get("success"))] += 1

    before = remaining_total(ids)
    with (uvicorn_server(os.environ["BENCH_DATABASE_URL"]) as (base, log),
          AsyncScenarios() as runner,
          Progress(f"rest [{rec.backend}, {rec.mode}]", total=plan.rounds) as bar):
        if runner.run(wait_ready(base)) != 200:
            rec.note("the REST API did not answer GET /catalog with 200; server log:\n"
                     + log.read_text(errors="replace")[-1500:])
            return
        one, swarm = Sequential(base, ids), Swarm(runner, base, ids)
        floor = Sequential(base, ids, token=UNKNOWN_TOKEN)
        try:
            comparison = interleave({
                "REST consume": repeat(one.consume),
                "in-process consume_quota": repeat(in_process),
                f"REST consume, {CONCURRENCY} in flight": swarm,
                "REST 401, no database": repeat(floor.consume),
            }, plan, tick=bar.tick)
        finally:
            swarm.close()
        server_log = log.read_text(errors="replace")[-1500:]
    rec.rates(comparison)
    rec.note(f"uvicorn's HTTP parser: {http_parser()}")
    rec.ratio("REST consume / in-process consume_quota", comparison, "REST consume",
              "in-process consume_quota", target="rest",
              why="per request: HTTP, the middleware stack, thread hops, auth, the user "
              "lookup and JSON around the same consume")
    rec.ratio(f"REST consume, {CONCURRENCY} in flight / in-process consume_quota", comparison,
              f"REST consume, {CONCURRENCY} in flight", "in-process consume_quota")
    rec.ratio("REST 401, no database / in-process consume_quota", comparison,
              "REST 401, no database", "in-process consume_quota",
              why="the server stack's fixed cost per request against one consume: with x this "
              "ratio, REST consume / in-process stays below x / (1 + x)")
    statuses = one.statuses + swarm.statuses
    failures = sum(n for status, n in statuses.items() if status != 200)
    spent = before - remaining_total(ids)
    rec.metric("REST answers", sum(statuses.values()), "requests",
               statuses={str(k): v for k, v in sorted(statuses.items())})
    if failures:
        rec.note(f"{failures} requests did not get 200; server log tail:\n{server_log}")
    rec.target("answers other than 200", value=failures, required=0, at_most=True,
               unit="requests")
    rec.target("floor answers other than 401",
               value=sum(n for status, n in floor.statuses.items() if status != 401),
               required=0, at_most=True, unit="requests")
    rec.target("units spent == 200 answers + in-process successes (1 = yes)",
               value=1.0 if spent == statuses[200] + local[True] else 0.0, required=1.0,
               unit="ok")
