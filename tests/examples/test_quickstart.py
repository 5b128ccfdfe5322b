"""The README's first quick-start command, run as a newcomer would, in a fresh copy of the tree.

``python3 dev.py demo --no-serve`` runs in a temporary directory holding the repository without
``.venv``, ``.git`` or any demo database. ``BILLABLE_VENV`` lets dev.py reuse the already
installed virtual environment instead of downloading everything again; every other step
(migrations, the demo catalog, the fake Telegram server, polling, the scripted conversation)
happens for real in the copy.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers import POSTGRES, backend_independent, free_port

ROOT = Path(__file__).resolve().parents[2]
IGNORED = shutil.ignore_patterns(".venv", ".git", ".demo", ".mypy_cache", ".ruff_cache",
                                 ".pytest_cache", ".hypothesis", "__pycache__", "*.egg-info",
                                 "*.sqlite3")
#: Variables of the developer's shell that would change what the demo does.
CLEARED = ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "TELEGRAM_BOT_TOKEN", "TELEGRAM_API_SERVER",
           "BILLABLE_DEMO_DIR", "PYTHONPATH", "BILLABLE_API_TOKEN")


PYTHON3 = shutil.which("python3") or sys.executable


def demo_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["BILLABLE_VENV"] = sys.prefix  # the venv running these tests
    return env


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository as a fresh clone would have it."""
    target = tmp_path_factory.mktemp("fresh") / "billable"
    shutil.copytree(ROOT, target, ignore=IGNORED)
    return target


@pytest.fixture(scope="module")
def demo_output(checkout: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON3, "dev.py", "demo", "--no-serve"], cwd=checkout,
                          env=demo_env(), capture_output=True, text=True, timeout=300,
                          check=False)


@backend_independent  # the demo's own SQLite database, whatever the suite's
@pytest.mark.slow
def test_demo_command_succeeds_in_a_fresh_checkout(
    demo_output: subprocess.CompletedProcess[str],
) -> None:
    assert demo_output.returncode == 0, demo_output.stdout[-3000:] + demo_output.stderr[-3000:]
    assert "Traceback" not in demo_output.stderr


@backend_independent  # the demo's own SQLite database, whatever the suite's
@pytest.mark.slow
@pytest.mark.parametrize("check", ["trial granted", "invoice sent", "payment confirmed",
                                   "quota used", "refund done"])
def test_demo_story_check_passes(demo_output: subprocess.CompletedProcess[str],
                                 check: str) -> None:
    assert f"[ok] {check}" in demo_output.stdout


@backend_independent  # the demo's own SQLite database, whatever the suite's
@pytest.mark.slow
def test_demo_prints_the_conversation(demo_output: subprocess.CompletedProcess[str]) -> None:
    lines = demo_output.stdout.splitlines()
    said = [line for line in lines if line.startswith(("user", "admin", "telegram", "bot"))]
    expected_in_order = [
        "user     > /start",
        "bot      > Welcome to the billable demo bot!",
        "user     > /trial",
        "bot      > Your free trial is active",
        "bot      > [invoice] 100 credits: 50 XTR",
        "telegram > pre_checkout_query: 50 XTR",
        "bot      > [pre-checkout] ok",
        "bot      > Payment received",
        "user     > /predict",
        "bot      > 🔮",
        "admin    > /refund stxDEMO",
        "bot      > [refundStarPayment] stxDEMO",
        "bot      > Refund of stxDEMO",
    ]
    position = 0
    for fragment in expected_in_order:
        found = next((i for i in range(position, len(said)) if said[i].startswith(fragment)),
                     None)
        assert found is not None, f"{fragment!r} missing after line {position}:\n" + "\n".join(said)
        position = found + 1
    assert "Demo catalog ready" in demo_output.stdout



def wait_for_line(process: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    """Read the demo's output until ``marker`` appears; return the lines read."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} never printed:\n" + "\n".join(lines[-40:]))


@backend_independent  # the demo's own SQLite database, whatever the suite's
@pytest.mark.slow
def test_demo_serves_api_and_admin_with_the_printed_credentials(
    checkout: Path, demo_output: subprocess.CompletedProcess[str]
) -> None:
    port = free_port()
    process = subprocess.Popen([PYTHON3, "dev.py", "demo", "--port", str(port)], cwd=checkout,
                               env={**demo_env(), "PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        lines = wait_for_line(process, "stop with Ctrl+C", timeout=240)
        printed = "\n".join(lines)
        password = re.search(r"user 'admin', password '([^']+)'", printed)
        token = re.search(r"token '([^']+)'", printed)
        assert password and token, printed
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as web:
            catalog = _retry(lambda: web.get("/api/v1/billing/catalog",
                                             headers={"Authorization": f"Bearer {token[1]}"}))
            login_page = web.get("/admin/login/")
            csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text)
            assert csrf, login_page.text[:500]
            logged_in = web.post("/admin/login/?next=/admin/", follow_redirects=True, data={
                "username": "admin", "password": password[1],
                "csrfmiddlewaretoken": csrf[1], "next": "/admin/"})
        assert catalog.status_code == 200
        assert "STARS_PACK_S" in {offer["sku"] for offer in catalog.json()}
        assert logged_in.status_code == 200
        assert "Site administration" in logged_in.text
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def _retry(call: Any, attempts: int = 20) -> Any:
    """The server may print its banner a moment before it accepts connections."""
    for _ in range(attempts - 1):
        try:
            return call()
        except httpx.TransportError:
            time.sleep(0.5)
    return call()


@pytest.mark.skipif(not POSTGRES, reason="needs PostgreSQL (DATABASE_URL=postgres://…)")
@pytest.mark.slow
def test_demo_runs_against_postgresql_with_database_url() -> None:
    """``DATABASE_URL`` switches the demo project to PostgreSQL (a throw-away database)."""
    import psycopg

    server = urlsplit(os.environ["DATABASE_URL"])
    name = f"billable_demo_{os.getpid()}"
    admin_url = server._replace(scheme="postgresql").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {**demo_env(), "PYTHONPATH": str(ROOT),
               "DJANGO_SETTINGS_MODULE": "examples.demo_project.settings",
               "DATABASE_URL": server._replace(path=f"/{name}").geturl()}
        done = subprocess.run([sys.executable, "-m", "examples.demo", "--no-serve"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300, check=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all checks passed" in done.stdout


@backend_independent  # the demo's own SQLite database, whatever the suite's
@pytest.mark.slow
async def test_demo_with_a_token_polls_the_api_server_named_by_env(tmp_path: Path) -> None:
    """``TELEGRAM_BOT_TOKEN`` + ``TELEGRAM_API_SERVER``: the real-bot path, against a loopback
    Bot API server instead of Telegram."""
    import asyncio

    from bot_kit.testing import FakeBotAPIServer, UpdateFactory

    async with FakeBotAPIServer() as server:
        env = {**demo_env(), "PYTHONPATH": str(ROOT), "BILLABLE_DEMO_DIR": str(tmp_path),
               "DJANGO_SETTINGS_MODULE": "examples.demo_project.settings",
               "TELEGRAM_BOT_TOKEN": "42:TEST", "TELEGRAM_API_SERVER": server.url}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "examples.demo", "--no-serve", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)
        try:
            await server.wait_for_call("getMe", timeout=240)
            server.put_update(UpdateFactory().command("start"))
            reply = await server.wait_for_call("sendMessage", timeout=60)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            await asyncio.wait_for(process.communicate(), 30)

    assert str(reply.params["text"]).startswith("Welcome to the billable demo bot!")


def port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not port_is_open(port):
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.2)


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def is_running(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" not in status.read_text()


@backend_independent  # the demo's own SQLite database, whatever the suite's
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_offline_demo_with_web_server_stops_cleanly_on_a_signal(
        checkout: Path, demo_output: subprocess.CompletedProcess[str], sig: int) -> None:
    port = free_port()
    env = {**demo_env(), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(checkout),
           "DJANGO_SETTINGS_MODULE": "examples.demo_project.settings"}
    process = subprocess.Popen([sys.executable, "-m", "examples.demo", "--port", str(port)],
                               cwd=checkout, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for_line(process, "stop with Ctrl+C", timeout=240)
        wait_for_port(port, 60)
        process.send_signal(sig)
        code = process.wait(timeout=30)
        rest = process.stdout.read() if process.stdout else ""
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        if process.stdout is not None:
            process.stdout.close()
    assert code == 0, rest[-3000:]
    assert "Traceback" not in rest
    assert not port_is_open(port)


@backend_independent  # the demo's own SQLite database, whatever the suite's
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
async def test_demo_bot_and_web_server_stop_cleanly_through_dev_py(
        checkout: Path, demo_output: subprocess.CompletedProcess[str], sig: int) -> None:
    """The mode that used to ignore signals (token + web server), started by ``dev.py``, which
    must pass the signal on and leave no orphan."""
    import asyncio

    from bot_kit.testing import FakeBotAPIServer

    port = free_port()
    async with FakeBotAPIServer() as server:
        env = {**demo_env(), "TELEGRAM_BOT_TOKEN": "42:TEST",
               "TELEGRAM_API_SERVER": server.url}
        process = await asyncio.create_subprocess_exec(
            PYTHON3, "dev.py", "demo", "--port", str(port), cwd=checkout, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            await server.wait_for_call("deleteWebhook", timeout=240)
            for _ in range(150):
                if await asyncio.to_thread(port_is_open, port):
                    break
                await asyncio.sleep(0.2)
            [demo] = children_of(process.pid)
            process.send_signal(sig)  # to dev.py only, as a terminal or systemd would
            _, errors = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode == 0, errors.decode()[-3000:]
        assert not is_running(demo)  # no orphan
        assert not port_is_open(port)
        assert b"Traceback" not in errors
