"""``python3 dev.py test``: a failing session is the run's exit code; the serial mode runs both.

The side-by-side success path is what every full run of the suite goes through.

These start dev.py itself (with this venv, ``BILLABLE_VENV``) on a subset that needs no database,
so each costs the lint and type checks plus two pytest start-ups. The inner PostgreSQL session is
given a test database name of its own: the outer suite's PostgreSQL session may be running.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, backend_independent

pytestmark = backend_independent

SUBSET = "tests/architecture/test_bot_kit_boundary.py"


def postgres_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), 3):
            return True
    except OSError:
        return False


def dev_test(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    merged = {**os.environ, "BILLABLE_VENV": str(Path(sys.executable).parent.parent),
              "BILLABLE_TEST_DB_NAME": f"test_devpy_{os.getpid()}", **env}
    for name in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "BILLABLE_TEST_SERIAL", "CI"):
        if name not in env:
            merged.pop(name, None)
    return subprocess.run([sys.executable, "dev.py", "test", *args], cwd=REPO, env=merged,
                          capture_output=True, text=True, timeout=600, check=False)


def test_a_failing_session_is_the_exit_code_and_the_sqlite_output_is_printed_whole() -> None:
    done = dev_test("tests/no_such_test_file.py")
    out = done.stdout
    assert done.returncode == 4, out[-3000:]  # pytest's "usage error" code, from both sessions
    head = "==> pytest on SQLite ended (exit code 4); its output:"
    assert head in out
    assert "no_such_test_file.py" in out.split(head)[1].split("==>")[0]  # its report, whole
    if postgres_answers():
        assert "==> pytest, side by side: PostgreSQL (" in out
        assert re.search(r"==> pytest on PostgreSQL \(\S+\) ended \(exit code 4\)\n", out)


def test_serial_mode_runs_sqlite_then_postgresql_and_both_pass() -> None:
    done = dev_test(SUBSET, BILLABLE_TEST_SERIAL="1")
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "ended (exit code" not in out  # streamed, one after the other
    assert "==> pytest on SQLite\n" in out
    if postgres_answers():
        assert out.index("==> pytest on SQLite\n") < out.index("==> pytest on PostgreSQL (")
        assert out.count(" passed in ") == 2
