"""Run the code blocks of a Markdown file: Python blocks in one namespace, curl blocks as requests.

Used by ``tests/test_readme.py`` so the README cannot drift from the code. Python blocks run in
order in a shared namespace; a block with a top-level ``await`` is awaited. Shell blocks that call
``curl`` are interpreted by a tiny shell (variables, line continuations, ``$(curl … | python3 -c
…)``) and every request goes to the Django test client instead of the network.
"""

from __future__ import annotations

import ast
import inspect
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
ASSIGN = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$", re.DOTALL)
SUBSHELL = re.compile(r"^\$\((curl .*?)\|\s*(python3 .*)\)$", re.DOTALL)
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def code_blocks(path: Path, language: str) -> list[tuple[int, str]]:
    """``(line number, source)`` of every fenced block of ``language`` in ``path``."""
    text = path.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(2))
        for match in FENCE.finditer(text)
        if match.group(1) == language
    ]


def run_python_blocks(path: Path, namespace: dict[str, Any]) -> int:
    """Execute every ``python`` block of ``path`` in ``namespace``; returns how many ran."""
    blocks = code_blocks(path, "python")
    for line, source in blocks:
        code = compile("\n" * (line) + source, str(path), "exec",
                       flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if inspect.iscoroutine(result):
            async_to_sync(_await)(result)
    return len(blocks)


async def _await(coroutine: Any) -> Any:
    return await coroutine


@dataclass
class Response:
    """One request made by the shell script and what the API answered."""

    method: str
    path: str
    status: int
    body: str


@dataclass
class CurlShell:
    """Interprets the README's shell snippets; ``client`` is a Django test ``Client``."""

    client: Any
    base_url: str = "http://127.0.0.1:8000"
    variables: dict[str, str] = field(default_factory=dict)
    responses: list[Response] = field(default_factory=list)

    def run(self, script: str) -> None:
        """Run a whole script (comments, blank lines and continuations allowed)."""
        for command in self._commands(script):
            self._run_command(command)

    @staticmethod
    def _commands(script: str) -> list[str]:
        joined = re.sub(r"\\\n\s*", " ", script)
        return [line.strip() for line in joined.splitlines()
                if line.strip() and not line.strip().startswith("#")]

    def expand(self, text: str) -> str:
        """Replace ``$NAME`` / ``${NAME}`` outside single quotes (as a POSIX shell does)."""
        parts = re.split(r"('[^']*')", text)
        return "".join(
            part if part.startswith("'") else
            VARIABLE.sub(lambda m: self.variables[m.group(1)], part)
            for part in parts
        )

    def _run_command(self, command: str) -> None:
        assign = ASSIGN.match(command)
        if assign is None:
            self.curl(command)
            return
        name, value = assign.groups()
        sub = SUBSHELL.match(value)
        if sub is None:
            self.variables[name] = shlex.split(self.expand(value))[0]
            return
        response = self.curl(sub.group(1))
        script = shlex.split(sub.group(2))
        if script[:2] != ["python3", "-c"]:
            raise ValueError(f"unsupported pipe: {sub.group(2)}")
        piped = subprocess.run([sys.executable, "-c", script[2]], input=response.body,
                               capture_output=True, text=True, check=True, timeout=30)
        self.variables[name] = piped.stdout.strip()

    def curl(self, command: str) -> Response:
        """Send one ``curl`` command through the test client."""
        args = shlex.split(self.expand(command))
        if args[0] != "curl":
            raise ValueError(f"unsupported command: {command}")
        method, url, data, headers = "GET", "", None, {}
        rest = iter(args[1:])
        for arg in rest:
            if arg == "-s":
                continue
            if arg == "-X":
                method = next(rest)
            elif arg == "-H":
                name, _, value = next(rest).partition(":")
                headers[name.strip()] = value.strip()
            elif arg == "-d":
                data = next(rest)
                method = "POST" if method == "GET" else method
            else:
                url = arg
        if not url.startswith(self.base_url):
            raise ValueError(f"unexpected URL {url}")
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        content_type = headers.pop("Content-Type", "application/octet-stream")
        answer = self.client.generic(method, path, data=data or "", content_type=content_type,
                                     headers=headers)
        response = Response(method, path, answer.status_code, answer.content.decode())
        self.responses.append(response)
        return response


__all__ = ["CurlShell", "Response", "code_blocks", "run_python_blocks"]
