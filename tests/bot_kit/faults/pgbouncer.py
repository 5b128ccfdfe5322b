"""A PgBouncer of the test's own (transaction pooling) in front of the CI PostgreSQL.

Debian's ``pgbouncer`` is installed on demand (``apt-get install``; root only). When that is
impossible the tests that need it are skipped with the reason — except under ``CI=true``, where
a missing PgBouncer fails loudly instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CONFIG = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {root}/users.txt
pool_mode = transaction
default_pool_size = 3
max_client_conn = 200
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = {root}/pgbouncer.log
pidfile = {root}/pgbouncer.pid
"""


def _apt_install() -> str | None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait = ["-o", "DPkg::Lock::Timeout=180"]  # another apt may be running: wait for it
    command = ["apt-get", *wait, "install", "-y", "--no-install-recommends", "pgbouncer"]
    for step in ([command], [["apt-get", *wait, "update"], command]):
        try:
            if all(subprocess.run(c, env=env, capture_output=True, timeout=600).returncode == 0
                   for c in step):
                break
        except (OSError, subprocess.TimeoutExpired):
            continue
    return find_pgbouncer(install=False)


def find_pgbouncer(*, install: bool = True) -> str | None:
    """The pgbouncer binary, installed with apt-get when missing and allowed."""
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None)
    if found or not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    return _apt_install()


@dataclass
class PgBouncer:
    port: int
    process: subprocess.Popen[bytes]
    root: Path

    def log(self) -> str:
        path = self.root / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_pgbouncer(root: Path, *, pg_host: str, pg_port: str, user: str,
                    listen: int) -> Iterator[PgBouncer]:
    binary = find_pgbouncer()
    if binary is None:
        reason = "PgBouncer is not installed and cannot be installed here (needs root + apt)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o777)
    (root / "users.txt").write_text(f'"{user}" ""\n')
    (root / "pgbouncer.ini").write_text(CONFIG.format(host=pg_host, port=pg_port, listen=listen,
                                                      root=root))
    command = [binary, str(root / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        command[1:1] = ["-u", "nobody"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield PgBouncer(listen, process, root)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
