"""Fault-injection fixtures: a database of the test's own, bot processes, Redis, PgBouncer.

Every test gets a PostgreSQL database cloned from the migrated test database (``TEMPLATE``),
seeded with the demo catalog. The test process switches its Django connection to the clone, so
the ORM and the services set up and check the story; the bot processes it starts (real
``manage.py runbot`` / ``billable_refunds``) connect to the same clone with
``application_name=faults-child`` — a "database restart" terminates those connections only.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from asgiref.sync import SyncToAsync
from django.core.management import call_command
from django.db import connections

from bot_kit.testing import FakeBotAPIServer
from tests.helpers import POSTGRES, free_port

ROOT = Path(__file__).resolve().parents[3]
CHILD_APP = "faults-child"
SECRET = "faults-webhook-secret_0123456789"
_serial = itertools.count(1)

pytestmark = pytest.mark.skipif(not POSTGRES, reason="fault injection needs PostgreSQL "
                                                     "(set DATABASE_URL=postgres://…)")



def admin_sql(sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the server's ``postgres`` database (autocommit)."""
    settings = connections["default"].settings_dict
    with psycopg.connect(host=settings["HOST"], port=settings["PORT"], user=settings["USER"],
                         password=settings["PASSWORD"] or None, dbname="postgres",
                         autocommit=True) as conn:
        cursor = conn.execute(sql, params or None)
        return cursor.fetchall() if cursor.description else []


def child_connections(dbname: str) -> int:
    """How many connections the bot processes hold to ``dbname``."""
    rows = admin_sql("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                     "AND application_name = %s", dbname, CHILD_APP)
    return int(rows[0][0])


def terminate_children(dbname: str) -> int:
    """"Restart" the database for the bot processes: kill their connections (only theirs)."""
    rows = admin_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND application_name = %s", dbname, CHILD_APP)
    return len(rows)


def _close_connections() -> None:
    connections.close_all()
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@dataclass
class FaultDB:
    """The test's own database."""

    name: str
    url: str


@pytest.fixture
def fault_db(transactional_db: None, django_db_blocker: Any) -> Iterator[FaultDB]:
    settings = connections["default"].settings_dict
    template = settings["NAME"]
    name = f"{template}_f{os.getpid()}_{next(_serial)}"[:60]
    with django_db_blocker.unblock():
        _close_connections()
        admin_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE datname = %s AND pid <> pg_backend_pid()", template)
        admin_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        settings["NAME"] = name
        try:
            call_command("billable_seed_demo", verbosity=0)
            url = (f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/"
                   f"{name}")
            yield FaultDB(name, url)
        finally:
            _close_connections()
            settings["NAME"] = template
            admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def telegram() -> AsyncIterator[FakeBotAPIServer]:
    """The loopback fake Bot API that the bot processes talk to (bot id 42)."""
    async with FakeBotAPIServer(max_long_poll=0.5) as server:
        yield server


@dataclass
class Child:
    """A bot process started by the test (its own process group; output in a log file)."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    def start(self) -> Child:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "django", *self.args],
                                        cwd=ROOT, env=self.env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self.signal(signal.SIGKILL)
        self.wait(10)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit status."""
        self.signal(signal.SIGTERM)
        code = self.wait(timeout)
        if code is None:
            self.kill()
        return code

    def wait(self, timeout: float) -> int | None:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        if self.alive:
            self.kill()
        if self._log is not None:
            self._log.close()


class Spawner:
    """Starts ``python -m django <command>`` processes against the test's database."""

    def __init__(self, db: FaultDB, tmp_path: Path) -> None:
        self.db = db
        self.tmp_path = tmp_path
        self.children: list[Child] = []

    def env(self, telegram_url: str, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("PYTEST", "TELEGRAM_"))}
        env.update(PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="tests.bot_kit.faults.settings",
                   DATABASE_URL=self.db.url, PGAPPNAME=CHILD_APP, TELEGRAM_BOT_TOKEN="42:TEST",
                   TELEGRAM_API_SERVER=telegram_url, PYTHONUNBUFFERED="1")
        env.update(extra)
        return env

    def start(self, *args: str, telegram_url: str, **extra: str) -> Child:
        log = self.tmp_path / f"child{len(self.children) + 1}-{args[0]}.log"
        child = Child(list(args), self.env(telegram_url, **extra), log).start()
        self.children.append(child)
        return child

    def close(self) -> None:
        for child in self.children:
            child.close()


@pytest.fixture
def spawn(fault_db: FaultDB, tmp_path: Path) -> Iterator[Spawner]:
    spawner = Spawner(fault_db, tmp_path)
    try:
        yield spawner
    finally:
        spawner.close()


@dataclass
class RedisServer:
    """A ``redis-server`` of the test's own, on a free port, that the test may kill."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        reason = "redis-server is not installed (the Redis fault test runs one of its own)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(port, process)
    try:
        wait_for_port(port, 10)
        yield server
    finally:
        server.stop()


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


async def await_port(port: int, timeout: float = 60, child: Child | None = None) -> None:  # noqa: ASYNC109
    """Wait (without blocking the loop) until 127.0.0.1:``port`` accepts connections."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if child is not None and not child.alive:
                raise AssertionError(f"the process exited:\n{child.output()[-3000:]}") from None
            if loop.time() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port}") from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
