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
import signal
import socket
import subprocess
import sys
import venv
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


def run(*args: str | Path, env: dict[str, str] | None = None, check: bool = True) -> int:
    """Run a child to completion; SIGINT/SIGTERM/SIGHUP sent to dev.py are passed on to it.

    The child gets its own session, so Ctrl+C reaches it once (through us) and dev.py never
    exits before it, leaving no orphan behind.
    """
    merged = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    child = subprocess.Popen([str(a) for a in args], cwd=ROOT, env=merged,
                             start_new_session=True)

    def forward(sig: int, frame: object) -> None:
        if child.poll() is None:
            child.send_signal(sig)

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, forward) for sig in signals}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    code = 128 - code if code < 0 else code  # killed by a signal: the shell's convention
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
    ensure_venv()
    settings = {"DJANGO_SETTINGS_MODULE": "tests.settings"}
    say("ruff")
    run(PY, "-m", "ruff", "check", ".")
    say("mypy")
    run(PY, "-m", "mypy", "billable", "bot_kit")
    say("makemigrations --check")
    run(PY, "-m", "django", "makemigrations", "--check", "--dry-run", env=settings)
    say("pytest on SQLite")
    run(PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args,
        env={**settings, "DATABASE_URL": ""})
    url = postgres_url()
    if url is None:
        if os.environ.get("CI", "").lower() == "true":
            say("PostgreSQL is not reachable and CI=true: failing")
            raise SystemExit(1)
        say("PostgreSQL is not reachable: skipping the PostgreSQL run (set BILLABLE_PG_URL)")
        return
    say(f"pytest on PostgreSQL ({url})")
    run(PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args,
        env={**settings, "DATABASE_URL": url})


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
