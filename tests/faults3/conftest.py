"""Fixtures of the third fault round: a PostgreSQL database of the test's own and the
documented processes (uvicorn + the demo project, ``manage.py`` commands) run against it.

The database is a clone (``TEMPLATE``) of the migrated test database with the demo catalog
(``billable_seed_demo``). Every child process connects with its own ``application_name`` so a
test can terminate exactly that process's connections and nothing else on the server.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from asgiref.sync import SyncToAsync
from django.core.management import call_command
from django.db import connections

from tests.helpers import POSTGRES, REPO, free_port

API_TOKEN = "faults3-token-0123456789abcdef"
WEBHOOK_SECRET = "faults3-webhook-secret_0123456789"
_serial = itertools.count(1)

needs_postgres = pytest.mark.skipif(
    not POSTGRES, reason="kills processes and terminates connections of a PostgreSQL server "
                         "(set DATABASE_URL=postgres://…)")


def admin_sql(sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the server's ``postgres`` database in autocommit."""
    s = connections["default"].settings_dict
    with psycopg.connect(host=s["HOST"], port=s["PORT"], user=s["USER"],
                         password=s["PASSWORD"] or None, dbname="postgres",
                         autocommit=True) as conn:
        cursor = conn.execute(sql, params or None)
        return cursor.fetchall() if cursor.description else []


def terminate(dbname: str, *app_names: str) -> int:
    """Terminate the backends of ``dbname`` whose ``application_name`` is one of ``app_names``."""
    rows = admin_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND application_name = ANY(%s)", dbname, list(app_names))
    return len(rows)


def _close_all() -> None:
    connections.close_all()
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@dataclass
class OwnDB:
    name: str
    url: str

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        s = connections["default"].settings_dict
        return psycopg.connect(host=s["HOST"], port=s["PORT"], user=s["USER"],
                               password=s["PASSWORD"] or None, dbname=self.name, **kwargs)


@pytest.fixture
def own_db(transactional_db: None, django_db_blocker: Any) -> Iterator[OwnDB]:
    """A database of this test's own (a clone of the migrated test database + demo catalog);
    the test process's ORM points at it for the duration of the test."""
    if not POSTGRES:
        pytest.skip("needs PostgreSQL")
    s = connections["default"].settings_dict
    template = s["NAME"]
    name = f"{template}_p3_{os.getpid()}_{next(_serial)}"[:60]
    with django_db_blocker.unblock():
        _close_all()
        admin_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE datname = %s AND pid <> pg_backend_pid()", template)
        admin_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        s["NAME"] = name
        try:
            call_command("billable_seed_demo", verbosity=0)
            password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
            yield OwnDB(name, f"postgres://{s['USER']}{password}@{s['HOST']}:{s['PORT']}/{name}")
        finally:
            _close_all()
            s["NAME"] = template
            admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Proc:
    """A child process in its own process group, output appended to ``log``."""

    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    _out: Any = field(default=None, repr=False)

    def start(self) -> Proc:
        self._out = self.log.open("ab")
        self.process = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=self._out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole group: no shutdown code runs anywhere."""
        if self.alive:
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def wait(self, timeout: float) -> int | None:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def close(self) -> None:
        self.kill()
        if self._out is not None:
            self._out.close()
            self._out = None


class Launcher:
    """Starts the documented entry points of the demo project against the test's database."""

    def __init__(self, db: OwnDB, tmp_path: Path) -> None:
        self.db = db
        self.tmp_path = tmp_path
        self.procs: list[Proc] = []

    def env(self, app_name: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTEST", "TELEGRAM_", "BILLABLE_", "DJANGO_"))}
        env.update(PYTHONPATH=str(REPO), DJANGO_SETTINGS_MODULE="examples.demo_project.settings",
                   DATABASE_URL=self.db.url, PGAPPNAME=app_name, PYTHONUNBUFFERED="1",
                   BILLABLE_API_TOKEN=API_TOKEN, TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET)
        env.update(extra)
        return env

    def start(self, name: str, argv: list[str], *, app_name: str, **extra: str) -> Proc:
        log = self.tmp_path / f"{len(self.procs) + 1:02d}-{name}.log"
        proc = Proc(argv, self.env(app_name, **extra), log).start()
        self.procs.append(proc)
        return proc

    def manage(self, name: str, *args: str, app_name: str, **extra: str) -> Proc:
        return self.start(name, [sys.executable, "examples/manage.py", *args],
                          app_name=app_name, **extra)

    def uvicorn(self, port: int, *, app_name: str, **extra: str) -> Proc:
        return self.start("uvicorn", [sys.executable, "-m", "uvicorn",
                                      "examples.demo_project.asgi:application",
                                      "--host", "127.0.0.1", "--port", str(port),
                                      "--workers", "1", "--no-access-log"],
                          app_name=app_name, **extra)

    def close(self) -> None:
        for proc in self.procs:
            proc.close()


@pytest.fixture
def launcher(own_db: OwnDB, tmp_path: Path) -> Iterator[Launcher]:
    launched = Launcher(own_db, tmp_path)
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """A seed per test run, printed in the failure report (``FAULTS3_SEED`` repeats one)."""
    value = int(os.environ.get("FAULTS3_SEED") or random.SystemRandom().randrange(1, 10**6))
    request.node.user_properties.append(("seed", value))
    print(f"faults3 seed: {value}")
    return value


def wait_port(port: int, timeout: float, proc: Proc | None = None) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            if proc is not None and not proc.alive:
                raise AssertionError(f"process exited:\n{proc.output()[-3000:]}") from None
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


__all__ = ["API_TOKEN", "WEBHOOK_SECRET", "Launcher", "OwnDB", "Proc", "admin_sql",
           "free_port", "needs_postgres", "terminate", "wait_port"]
