#!/usr/bin/env python3
"""Project bootstrap: one command for the demo, one for the tests.

    python3 dev.py demo     # set up .venv, migrate a local SQLite db, run the demo
    python3 dev.py test     # set up .venv, then lint, type-check and test on SQLite and PostgreSQL

Only the Python standard library is used here, so it runs on a machine that has nothing but
Python 3.11. Set-up is repeated only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# BILLABLE_VENV points at an existing, already set-up virtual environment to reuse (the
# quick-start test runs the demo in a fresh copy of the tree without reinstalling everything).
VENV = Path(os.environ["BILLABLE_VENV"]) if os.environ.get("BILLABLE_VENV") else ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".billable-installed"
PG_URL_DEFAULT = "postgres://postgres@127.0.0.1:5432/postgres"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def start(*args: str | Path, env: dict[str, str] | None = None,
          output: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a child in its own session (Ctrl+C reaches it once, through us); its output goes
    to ``output`` when given, else to our own stdout."""
    merged = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    sink = open(output, "wb") if output else None  # the child keeps its own copy
    try:
        return subprocess.Popen([str(a) for a in args], cwd=ROOT, env=merged,
                                start_new_session=True, stdout=sink,
                                stderr=subprocess.STDOUT if sink else None)
    finally:
        if sink:
            sink.close()


def wait(*children: subprocess.Popen[bytes], first: Callable[[subprocess.Popen[bytes]], None]
         | None = None) -> list[int]:
    """Wait for every child; SIGINT/SIGTERM/SIGHUP sent to dev.py are passed on to them, so
    dev.py never exits before them and leaves no orphan behind. ``first`` is called with each
    child as it ends. Exit codes in the children's order (killed by a signal: 128 + signal,
    the shell's convention)."""

    def forward(sig: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(sig)

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, forward) for sig in signals}
    try:
        pending = list(children)
        while pending:
            for child in list(pending):
                if child.poll() is not None:
                    pending.remove(child)
                    if first:
                        first(child)
            if pending:
                time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return [128 - c.returncode if c.returncode < 0 else c.returncode for c in children]


def run(*args: str | Path, env: dict[str, str] | None = None, check: bool = True) -> int:
    """Run a child to completion (see :func:`wait`); exit with its code when it fails."""
    (code,) = wait(start(*args, env=env))
    if check and code != 0:
        raise SystemExit(code)
    return code


def ensure_venv() -> None:
    """Create .venv and install the project with its dev extras (only when needed)."""
    if os.environ.get("BILLABLE_VENV"):
        if not PY.exists():
            say(f"BILLABLE_VENV={VENV} has no bin/python")
            raise SystemExit(2)
        return
    if not PY.exists():
        say("creating virtual environment in .venv")
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    say("installing dependencies (pip install -e '.[dev]')")
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PY, "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(wanted)


def postgres_url() -> str | None:
    """The PostgreSQL URL to test against, or None when no server answers."""
    url = os.environ.get("BILLABLE_PG_URL", PG_URL_DEFAULT)
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 5432), 3):
            return url
    except OSError:
        return None


def cmd_test(pytest_args: list[str]) -> None:
    """Lint, type checks and migrations check, then the suite on SQLite and on PostgreSQL.

    The pytest sessions run side by side: the PostgreSQL ones wait on the server most of the
    time, so the SQLite one costs little wall time beside them. A full run splits PostgreSQL in
    two (``tests/billable`` with ``tests/faults3``, and the rest; each with its own test
    database). The first session's output is streamed, each other's printed as a whole when
    it ends (see docs/testing.md).
    ``BILLABLE_TEST_SERIAL=1`` runs SQLite, then PostgreSQL, one after the other, both streamed.
    On a full run, what some tests install on first use (n8n, Chromium, billable 0.2) is
    fetched meanwhile (``tests/prefetch.py``).
    """
    ensure_venv()
    ci = os.environ.get("CI", "").lower() == "true"
    url = postgres_url()
    if url is None and ci:
        say("PostgreSQL is not reachable and CI=true: failing")
        raise SystemExit(1)
    work = Path(tempfile.mkdtemp(prefix="billable-test-"))
    # a full run only: a subset may not need them, and apt-get is not to be cut short
    prefetch = None if pytest_args else start(PY, "-m", "tests.prefetch",
                                              output=work / "prefetch.log")
    try:
        codes = _checks_and_suites(pytest_args, url, work)
    finally:
        if prefetch and prefetch.poll() is None:  # the run failed before anything needed it
            os.killpg(prefetch.pid, signal.SIGTERM)  # with the npm or apt-get it started
        if prefetch:
            wait(prefetch)
        shutil.rmtree(work, ignore_errors=True)
    failed = [code for code in codes if code]
    if failed:
        raise SystemExit(failed[0])


def _checks_and_suites(pytest_args: list[str], url: str | None, work: Path) -> list[int]:
    settings = {"DJANGO_SETTINGS_MODULE": "tests.settings"}
    say("ruff")
    run(PY, "-m", "ruff", "check", ".")
    say("mypy")
    run(PY, "-m", "mypy", "billable", "bot_kit")
    say("makemigrations --check")
    run(PY, "-m", "django", "makemigrations", "--check", "--dry-run", env=settings)

    def pytest(name: str) -> list[str | Path]:
        # each session its own base temporary directory: two sessions never share one
        return [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={work / name}",
                *pytest_args]

    sqlite_env = {**settings, "DATABASE_URL": ""}
    if url is None:
        say("pytest on SQLite")
        say("PostgreSQL is not reachable: the PostgreSQL run is skipped (set BILLABLE_PG_URL)")
        return [run(*pytest("sqlite"), env=sqlite_env, check=False)]
    pg_env = {**settings, "DATABASE_URL": url}
    if os.environ.get("BILLABLE_TEST_SERIAL"):
        say("pytest on SQLite")
        first = run(*pytest("sqlite"), env=sqlite_env, check=False)
        say(f"pytest on PostgreSQL ({url})")
        return [first, run(*pytest("postgresql"), env=pg_env, check=False)]
    # (title, command, environment): the first is shown as it runs, the others when they end
    sessions: list[tuple[str, list[str | Path], dict[str, str]]]
    if pytest_args:  # the paths or options given: one session per backend
        sessions = [(f"PostgreSQL ({url})", pytest("postgresql"), pg_env),
                    ("SQLite", pytest("sqlite"), sqlite_env)]
    else:  # the whole suite: PostgreSQL in two halves, each with a test database of its own
        base = os.environ.get("BILLABLE_TEST_DB_NAME") or "test_billable"
        sessions = [
            (f"PostgreSQL, tests/billable and tests/faults3 ({url})",
             [*pytest("pg-billable"), "tests/billable", "tests/faults3"],
             {**pg_env, "BILLABLE_TEST_DB_NAME": f"{base}_1"}),
            ("PostgreSQL, the rest of the suite",
             [*pytest("pg-rest"), "--ignore=tests/billable", "--ignore=tests/faults3"],
             {**pg_env, "BILLABLE_TEST_DB_NAME": f"{base}_2"}),
            ("SQLite", pytest("sqlite"), sqlite_env)]
    say("pytest, side by side: " + "; ".join(title for title, _, _ in sessions)
        + f". {sessions[0][0]} is shown as it runs, the others each when it ends")
    logs: dict[int, tuple[str, Path | None]] = {}
    children = []
    for index, (title, command, env) in enumerate(sessions):
        log = work / f"session-{index}.log" if index else None
        child = start(*command, env=env, output=log)
        logs[child.pid] = (title, log)
        children.append(child)

    def ended(child: subprocess.Popen[bytes]) -> None:
        title, log = logs[child.pid]
        print(flush=True)
        if log is None:
            say(f"pytest on {title} ended (exit code {child.returncode})")
            return
        say(f"pytest on {title} ended (exit code {child.returncode}); its output:")
        sys.stdout.buffer.write(log.read_bytes())
        sys.stdout.flush()
        say("end of that output")

    return wait(*children, first=ended)


def cmd_demo(demo_args: list[str]) -> None:
    ensure_venv()
    env = {"DJANGO_SETTINGS_MODULE": "examples.demo_project.settings"}
    run(PY, "-m", "examples.demo", *demo_args, env=env)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {"demo", "test", "setup"}:
        print(__doc__)
        raise SystemExit(2)
    command, rest = argv[0], argv[1:]
    if command == "setup":
        ensure_venv()
    elif command == "test":
        cmd_test(rest)
    else:
        cmd_demo(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
