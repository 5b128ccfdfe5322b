"""Helpers for the upgrade tests: the published 0.2 package, scratch databases, subprocess runs.

The 0.2 package is installed by the tests themselves from the package index, with pip, into a
cache outside the repository (``$BILLABLE_TEST_CACHE`` or ``~/.cache/billable-tests``) and
reused afterwards. 0.2.0 declares ``Requires-Python >=3.12`` but runs on 3.11 through the
``future-uuid`` backport it depends on, hence ``--ignore-requires-python``. Without the index
(and no cache) the tests that need 0.2 are skipped, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
LEGACY_REQUIREMENTS = ["billable==0.2.0", "future-uuid==1.0.0"]
TIMEOUT = 300


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def cache_dir() -> Path:
    base = os.environ.get("BILLABLE_TEST_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "billable-tests")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def legacy_package() -> Path:
    """A directory holding the published billable 0.2.0 (installed once, then cached)."""
    version = f"py{sys.version_info.major}{sys.version_info.minor}"
    target = cache_dir() / f"billable-0.2.0-{version}"
    if (target / ".complete").exists():
        return target
    staging = Path(tempfile.mkdtemp(prefix=".installing-", dir=cache_dir()))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--ignore-requires-python", "--target", str(staging),
         *LEGACY_REQUIREMENTS], capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        unavailable(f"cannot install billable 0.2.0 from the package index: {done.stderr[-400:]}")
    (staging / ".complete").write_text(" ".join(LEGACY_REQUIREMENTS))
    try:
        staging.rename(target)
    except OSError:  # a concurrent run installed it first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def vendor() -> str:
    return "sqlite" if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") else "postgresql"


@contextmanager
def scratch_database(directory: Path, name: str) -> Iterator[str]:
    """A new empty database on the backend of this test run; yields its URL, then drops it."""
    if vendor() == "sqlite":
        yield f"sqlite:///{directory / (name + '.sqlite3')}"
        return
    import psycopg

    config = settings.DATABASES["default"]
    db_name = f"{config['TEST'].get('NAME') or 'test_billable'}_{name}"
    auth = quote(config["USER"]) + (f":{quote(config['PASSWORD'])}" if config["PASSWORD"] else "")
    server = f"postgresql://{auth}@{config['HOST']}:{config['PORT']}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{db_name}"')
    try:
        yield f"{server}/{db_name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def run(args: list[str], *, url: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run ``python <args>`` against the database at ``url`` with this repository's settings."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": url,
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)


def checked(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def build_legacy(url: str, workdir: Path, scenario: str) -> dict[str, Any]:
    """Build a 0.2 database at ``url`` with the published package; return 0.2's snapshot."""
    snapshot = workdir / f"{scenario}-0.2.json"
    checked(subprocess.run(
        [sys.executable, str(HERE / "legacy_build.py"), str(legacy_package()), url,
         str(snapshot), scenario],
        cwd=workdir, capture_output=True, text=True, timeout=TIMEOUT, check=False,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",
                                                              "DJANGO_SETTINGS_MODULE")}))
    data: dict[str, Any] = json.loads(snapshot.read_text())
    data["path"] = str(snapshot)
    return data


def read_upgraded(url: str, snapshot: dict[str, Any], workdir: Path, mode: str) -> Any:
    """Run ``upgraded_read.py`` (``rows`` or ``full``) and return its JSON result."""
    out = workdir / f"read-{mode}.json"
    checked(run([str(HERE / "upgraded_read.py"), snapshot["path"], str(out), mode], url=url))
    return json.loads(out.read_text())


def migrate(url: str, *targets: str) -> subprocess.CompletedProcess[str]:
    return run(["-m", "django", "migrate", "--noinput", *targets], url=url)
