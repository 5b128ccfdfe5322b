"""A loopback HTTP proxy between n8n and the API that records requests and can lose responses.

``lose_responses("/exchange", 1)`` makes the next matching request reach the API (which
commits it) while n8n gets a ``502`` instead of the answer: the failure that makes a client
retry an operation that had in fact succeeded.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass(frozen=True)
class Seen:
    """One request that went through the proxy, and what n8n was answered."""

    method: str
    path: str
    body: Any
    api_status: int
    answered: int


class LossyProxy:
    """Forwards every request to ``upstream``; loses the answers it was told to lose."""

    def __init__(self, upstream: str) -> None:
        self.upstream = httpx.Client(base_url=upstream, timeout=60)
        self.seen: list[Seen] = []
        self._lose: dict[str, int] = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LossyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.upstream.close()

    def lose_responses(self, path_suffix: str, count: int) -> None:
        """Lose the answers to the next ``count`` requests whose path ends with the suffix."""
        with self._lock:
            self._lose[path_suffix] = count

    def requests_to(self, path_suffix: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path.split("?")[0].endswith(path_suffix)]

    def _should_lose(self, path: str) -> bool:
        with self._lock:
            for suffix, left in self._lose.items():
                if left > 0 and path.split("?")[0].endswith(suffix):
                    self._lose[suffix] = left - 1
                    return True
        return False

    def _forward(self, method: str, path: str, headers: dict[str, str],
                 body: bytes) -> tuple[int, bytes, str]:
        answer = self.upstream.request(method, path, headers=headers, content=body)
        lost = self._should_lose(path)
        parsed = json.loads(body) if body else None
        with self._lock:
            self.seen.append(Seen(method, path, parsed, answer.status_code,
                                  502 if lost else answer.status_code))
        if lost:
            return 502, b'{"detail": "answer lost by the test proxy"}', "application/json"
        return answer.status_code, answer.content, answer.headers.get("content-type", "")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _relay(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in HOP_BY_HOP}
                status, content, content_type = proxy._forward(self.command, self.path,
                                                               headers, body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _relay

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
