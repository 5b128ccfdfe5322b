"""A real n8n for the tests: installed once into a cache, started headless on loopback.

``ensure_n8n()`` installs the ``n8n`` npm package (pinned to the last release that runs on
Node 20) into ``~/.cache/billable-n8n/<version>`` on first use and reuses it afterwards.
``N8nInstance`` is one n8n server with its own user folder (its own SQLite database), bound to
127.0.0.1 on free ports, with telemetry, version checks, templates and banners switched off.
It is driven through n8n's CLI (``import:*``) and the REST API its editor uses.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import free_port

#: The last n8n release whose ``engines`` accepts Node 20 (2.10.0 needs Node >= 22.16).
N8N_VERSION = "2.8.4"
#: n8n pins ``xlsx`` to a tarball on cdn.sheetjs.com, outside the npm registry; 0.18.5 is the
#: newest ``xlsx`` published to the registry.
NPM_OVERRIDES = {"xlsx": "0.18.5"}
MIN_NODE = (20, 19)
INSTALL_TIMEOUT = 1800
OWNER = {"email": "owner@example.com", "firstName": "Test", "lastName": "Owner",
         "password": "Billable-n8n-1"}
#: Sent on every REST call: n8n binds its session cookie to a browser id.
BROWSER_ID = "billable-tests"


class N8nUnavailable(RuntimeError):
    """Node.js or npm is missing or too old for the pinned n8n."""


def cache_root() -> Path:
    configured = os.environ.get("BILLABLE_N8N_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "billable-n8n"


def node_version() -> tuple[int, int]:
    """The major and minor version of ``node`` on PATH (``N8nUnavailable`` without one)."""
    if not shutil.which("node") or not shutil.which("npm"):
        raise N8nUnavailable("node and npm are needed on PATH to run n8n")
    printed = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    major, minor, *_ = printed.stdout.strip().lstrip("v").split(".")
    version = (int(major), int(minor))
    if version < MIN_NODE:
        raise N8nUnavailable(f"n8n {N8N_VERSION} needs Node >= 20.19, found {printed.stdout}")
    return version


def _npm_env() -> dict[str, str]:
    """npm's environment; native modules (sqlite3) build against the local Node headers.

    sqlite3 has no prebuilt binary reachable without GitHub, so node-gyp compiles it; pointing
    it at the headers installed with Node avoids a download from nodejs.org.
    """
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false",
           "npm_config_audit": "false"}
    node = shutil.which("node")
    prefix = Path(node).resolve().parent.parent if node else None
    if prefix and (prefix / "include" / "node" / "node_version.h").exists():
        env.setdefault("npm_config_nodedir", str(prefix))
    return env


def ensure_n8n() -> Path:
    """The n8n executable, installed into the cache on first use (under a file lock)."""
    node_version()
    root = cache_root()
    target = root / N8N_VERSION
    binary = target / "node_modules" / ".bin" / "n8n"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{N8N_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "installed.json").exists():
            return binary
        _install(target)
    return binary


def _install(target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    partial.mkdir(parents=True)
    package = {"name": "billable-n8n-tests", "private": True,
               "dependencies": {"n8n": N8N_VERSION}, "overrides": NPM_OVERRIDES}
    (partial / "package.json").write_text(json.dumps(package, indent=2))
    started = time.monotonic()
    done = subprocess.run(["npm", "install", "--loglevel=error"], cwd=partial, env=_npm_env(),
                          capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"npm install n8n@{N8N_VERSION} failed:\n{done.stderr[-4000:]}")
    seconds = round(time.monotonic() - started, 1)
    partial.rename(target)
    (target / "installed.json").write_text(json.dumps({"n8n": N8N_VERSION, "seconds": seconds}))



def unflatten(text: str) -> Any:
    """Decode n8n's stored execution data (the ``flatted`` format: a table of values whose
    containers refer to other entries by their index, written as a string)."""
    table = json.loads(text)
    revived: dict[int, Any] = {}

    def revive(index: int) -> Any:
        if index in revived:
            return revived[index]
        value = table[index]
        if isinstance(value, list):
            items: list[Any] = []
            revived[index] = items
            items.extend(resolve(v) for v in value)
            return items
        if isinstance(value, dict):
            fields: dict[str, Any] = {}
            revived[index] = fields
            fields.update({k: resolve(v) for k, v in value.items()})
            return fields
        return value

    def resolve(value: Any) -> Any:
        return revive(int(value)) if isinstance(value, str) else value

    return revive(0)


class N8nInstance:
    """One headless n8n server with its own user folder, on free loopback ports."""

    def __init__(self, binary: Path, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "n8n.log"
        self.client = httpx.Client(base_url=self.url, timeout=60,
                                   headers={"browser-id": BROWSER_ID})

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("N8N_", "DB_", "EXECUTIONS_"))}
        return {**keep,
                "N8N_USER_FOLDER": str(self.folder), "N8N_PORT": str(self.port),
                "N8N_LISTEN_ADDRESS": "127.0.0.1", "N8N_HOST": "127.0.0.1",
                "N8N_RUNNERS_BROKER_PORT": str(free_port()),
                "N8N_RUNNERS_BROKER_LISTEN_ADDRESS": "127.0.0.1",
                "N8N_ENCRYPTION_KEY": "billable-tests-only", "N8N_SECURE_COOKIE": "false",
                "N8N_DIAGNOSTICS_ENABLED": "false", "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
                "N8N_TEMPLATES_ENABLED": "false", "N8N_PERSONALIZATION_ENABLED": "false",
                "N8N_HIRING_BANNER_ENABLED": "false", "N8N_DYNAMIC_BANNERS_ENABLED": "false",
                "N8N_LICENSE_AUTO_RENEW_ENABLED": "false", "N8N_AI_ENABLED": "false",
                "N8N_PUBLIC_API_DISABLED": "true", "N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS": "false",
                "EXECUTIONS_DATA_SAVE_MANUAL_EXECUTIONS": "true", "N8N_LOG_LEVEL": "warn",
                "DB_TYPE": "sqlite"}

    def cli(self, *args: str) -> str:
        """Run an ``n8n`` CLI command on this instance's user folder (server stopped)."""
        done = subprocess.run([str(self.binary), *args], env=self.env(), capture_output=True,
                              text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"n8n {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([str(self.binary), "start"], env=self.env(),
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"n8n exited:\n{self.log.read_text()[-4000:]}")
            try:
                # /healthz/readiness answers before the REST routes are mounted
                if self.client.get("/rest/settings").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"n8n not ready after {timeout} s:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        self.client.close()
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def rest(self, method: str, path: str, body: Any = None) -> Any:
        response = self.client.request(method, f"/rest{path}", json=body)
        if response.status_code != 200:
            raise RuntimeError(f"n8n {method} {path}: {response.status_code} {response.text}")
        return response.json()["data"]

    def set_up_owner(self, timeout: float = 90) -> None:
        """Create the owner account; its session cookie authenticates later calls.

        n8n mounts its REST controllers one after another after ``/rest/settings`` already
        answers: under load ``/owner/setup`` can still be a 404 page for a while, so that
        answer is waited out (any other answer is final)."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.client.request("POST", "/rest/owner/setup", json=OWNER)
            if response.status_code != 404 or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        if response.status_code != 200:
            raise RuntimeError(f"n8n POST /owner/setup: {response.status_code} {response.text}")

    def workflow_id(self, name: str) -> str:
        (found,) = [w["id"] for w in self.rest("GET", "/workflows") if w["name"] == name]
        return str(found)

    def run(self, workflow: dict[str, Any]) -> str:
        """Execute a stored workflow from its manual trigger, as the editor's *Execute
        workflow* button does (with the editor's copy of the workflow, saved or not); returns
        the execution id."""
        (trigger,) = [n["name"] for n in workflow["nodes"]
                      if n["type"] == "n8n-nodes-base.manualTrigger"]
        started = self.rest("POST", f"/workflows/{workflow['id']}/run",
                            {"workflowData": workflow, "triggerToStartFrom": {"name": trigger}})
        return str(started["executionId"])

    def wait(self, execution_id: str, timeout: float = 120) -> dict[str, Any]:
        """The finished execution, with its ``data`` decoded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            execution = self.rest("GET", f"/executions/{execution_id}")
            if execution["status"] not in ("new", "running", "waiting"):
                execution["data"] = unflatten(execution["data"])
                return dict(execution)
            time.sleep(0.2)
        raise RuntimeError(f"execution {execution_id} still running after {timeout} s")

    def retry(self, execution_id: str) -> str:
        """n8n's *Retry with original workflow*: a new execution that keeps the output of the
        nodes that had succeeded and runs again from the node that failed."""
        return str(self.rest("POST", f"/executions/{execution_id}/retry",
                             {"loadWorkflow": False})["id"])


def node_runs(execution: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per node name, its runs in this execution (``executionStatus``, ``data``, ``error``)."""
    return dict(execution["data"]["resultData"]["runData"])


def node_output(execution: dict[str, Any], node: str) -> Any:
    """The JSON of the first item the node's last run produced."""
    return node_runs(execution)[node][-1]["data"]["main"][0][0]["json"]
