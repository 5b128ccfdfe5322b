"""Throw-away benchmark databases, their durability mode and the migrated templates they copy.

Every benchmark process gets a database of its own, created empty (or copied from a migrated
template, which saves a migration per process) and dropped afterwards. The *durability mode*
decides how a commit ends:

* ``durable`` — PostgreSQL ``synchronous_commit = on``; SQLite WAL with ``synchronous = FULL``:
  every COMMIT waits until the log is on disk, as in production;
* ``code-only`` — PostgreSQL ``synchronous_commit = off``; SQLite ``synchronous = OFF``: a COMMIT
  returns without waiting for the disk, so what is left is the code's own cost.

On PostgreSQL the mode is set with ``PGOPTIONS`` for the whole benchmark process, so every
session libpq opens — the benchmark's, a pool's, a server subprocess's — starts with it.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse, urlunparse

PG_URL_DEFAULT = "postgres://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgresql")
MODES = ("durable", "code-only")


def pg_admin_url() -> str:
    """The maintenance PostgreSQL URL: ``BILLABLE_PG_URL``, a postgres ``DATABASE_URL``, local."""
    for name in ("BILLABLE_PG_URL", "DATABASE_URL"):
        value = os.environ.get(name, "")
        if value.startswith(("postgres://", "postgresql://")):
            return value
    return PG_URL_DEFAULT


def postgres_available(url: str | None = None) -> bool:
    """True when a PostgreSQL server answers at ``url`` (TCP connect only, 3 s timeout)."""
    parsed = urlparse(url or pg_admin_url())
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 5432), 3):
            return True
    except OSError:
        return False


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead of its own."""
    return urlunparse(urlparse(url)._replace(path="/" + name))


def database_name(stem: str) -> str:
    """``<BENCH_DB_PREFIX>_<stem>_<pid>``: unique on the machine while this process lives."""
    name = f"{os.environ.get('BENCH_DB_PREFIX') or 'bench'}_{stem}_{os.getpid()}"
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {name!r}")
    return name.lower()


def _pg_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(pg_admin_url(), autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def apply_mode(mode: str) -> None:
    """Make every PostgreSQL session this process (and its children) opens use ``mode``."""
    if mode not in MODES:
        raise ValueError(f"unknown durability mode {mode!r}")
    os.environ["BENCH_DURABILITY"] = mode
    value = "off" if mode == "code-only" else "on"
    os.environ["PGOPTIONS"] = f"-c synchronous_commit={value}"


def current_mode() -> str:
    return os.environ.get("BENCH_DURABILITY") or "durable"


def sqlite_options(mode: str | None = None) -> dict[str, Any]:
    """SQLite connection options: WAL, writers that queue (``BEGIN IMMEDIATE`` and a busy
    timeout, as the demo project ships), and the sync level of ``mode``."""
    sync = "OFF" if (mode or current_mode()) == "code-only" else "FULL"
    return {"timeout": 30, "transaction_mode": "IMMEDIATE",
            "init_command": f"PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}"}


def database_settings(url: str) -> dict[str, Any]:
    """A Django ``DATABASES`` entry for ``url`` (``sqlite:///path`` or ``postgres://...``)."""
    parsed = urlparse(url)
    if parsed.scheme.startswith("sqlite"):
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parsed.path,
                "OPTIONS": sqlite_options()}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parsed.path.lstrip("/"),
        "USER": parsed.username or "postgres",
        "PASSWORD": parsed.password or "",
        "HOST": parsed.hostname or "127.0.0.1",
        "PORT": str(parsed.port or 5432),
    }


@contextmanager
def bench_database(backend: str, stem: str, *, template: str | None = None) -> Iterator[str]:
    """Create a database for one benchmark (a copy of ``template`` when given, else empty),
    yield its URL, drop it afterwards."""
    name = database_name(stem)
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix=f"{name}_")
        path = os.path.join(folder, f"{name}.sqlite3")
        try:
            if template:
                shutil.copyfile(urlparse(template).path, path)
            yield f"sqlite:///{path}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    source = f' TEMPLATE "{urlparse(template).path.lstrip("/")}"' if template else ""
    _pg_admin(f'CREATE DATABASE "{name}"{source}')
    try:
        yield with_database(pg_admin_url(), name)
    finally:
        from django.db import connections

        connections.close_all()
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def durability_setting() -> str:
    """What the default connection reports: ``synchronous_commit=…`` or ``synchronous=…``."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW synchronous_commit")
            return f"synchronous_commit={cursor.fetchone()[0]}"
        cursor.execute("PRAGMA synchronous")
        level = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(cursor.fetchone()[0], "?")
        return f"synchronous={level}"


@contextmanager
def templates(backends: list[str], migrate: Any) -> Iterator[dict[str, str]]:
    """A migrated template database per backend (``migrate(url)`` fills one); dropped at exit.

    Yields ``{backend: url}``; a backend whose template could not be made is left out (its
    benchmarks then migrate a database of their own).
    """
    made: dict[str, str] = {}
    folder = tempfile.mkdtemp(prefix="bench_template_")
    try:
        for backend in backends:
            if backend == "sqlite":
                url = f"sqlite:///{folder}/template.sqlite3"
            else:
                name = database_name("template")
                _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                _pg_admin(f'CREATE DATABASE "{name}"')
                url = with_database(pg_admin_url(), name)
            if migrate(url):
                made[backend] = url
        yield made
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if "postgresql" in backends:
            _pg_admin(f'DROP DATABASE IF EXISTS "{database_name("template")}" WITH (FORCE)')


__all__ = ["BACKENDS", "MODES", "apply_mode", "bench_database", "current_mode",
           "database_settings", "durability_setting", "pg_admin_url", "postgres_available",
           "sqlite_options", "templates", "with_database"]
