"""Every scheduled job (docs/operations.md, *The jobs*) run while its database — or, for the
Telegram jobs, the Bot API — cannot be reached: exit status 1 and one ``CommandError`` line
naming the outage, never a traceback in cron mail or the journal.

No server is needed: the database URL and the Bot API point at a closed port.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import REPO, backend_independent, free_port

pytestmark = backend_independent

DEMO = ("--dispatcher", "examples.demo_bot.bot.build_dispatcher")
JOBS = [("billable_expire",), ("billable_check_ledger",), ("billable_deliver_events",),
        ("billable_alerts",), ("billable_growth_sweep",), ("billable_refunds", *DEMO),
        ("billable_reconcile_stars",), ("billable_notify", *DEMO), ("billable_gift_refunds",)]


def run(command: tuple[str, ...], port: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "TELEGRAM_"))}
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", PYTHONPATH=str(REPO),
               DATABASE_URL=f"postgres://postgres@127.0.0.1:{port}/unreachable",
               TELEGRAM_BOT_TOKEN="42:TEST", TELEGRAM_API_SERVER=f"http://127.0.0.1:{port}")
    return subprocess.run([sys.executable, "-m", "django", *command], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_every_job_reports_an_outage_in_one_line() -> None:
    pytest.importorskip("psycopg")
    port = free_port()  # nothing listens there
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip([j[0] for j in JOBS], pool.map(lambda job: run(job, port), JOBS),
                           strict=True))
    for job, done in results.items():
        output = done.stdout + done.stderr
        assert done.returncode == 1, (job, output[-2000:])
        assert "Traceback" not in output, (job, output[-3000:])
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("CommandError: ") and "unavailable" in last.lower(), (job, last)
