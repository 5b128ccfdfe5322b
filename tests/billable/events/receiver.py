"""A loopback HTTP receiver of billable events for tests: verifies signatures, dedupes by id."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from billable.events import signing


class Receiver:
    """Answers 500 to the first ``fail_first`` requests, then 200. ``hold`` seconds of delay
    before answering (a slow endpoint). Every request is kept in ``requests``; ``handled``
    holds each event id once (the receiver's own dedupe), in arrival order."""

    def __init__(self, secret: str, *, fail_first: int = 0, hold: float = 0.0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.hold = hold
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.handled: list[str] = []
        self.in_flight = 0
        self.max_in_flight: dict[str, int] = {}
        self.url = ""

    def answer(self, body: bytes, headers: Any) -> int:
        valid = signing.verify(self.secret, body, headers.get(signing.SIGNATURE_HEADER, ""))
        document = json.loads(body)
        event_id = document["id"]
        with self.lock:
            self.in_flight += 1
            self.max_in_flight[event_id] = max(self.max_in_flight.get(event_id, 0),
                                               sum(1 for r in self.requests
                                                   if r["id"] == event_id and r["open"]) + 1)
            record = {"id": event_id, "type": document["type"], "valid": valid, "open": True,
                      "header_id": headers.get(signing.EVENT_ID_HEADER), "document": document}
            self.requests.append(record)
            failing = len(self.requests) <= self.fail_first
        try:
            if self.hold:
                time.sleep(self.hold)
            if not valid:
                return 400
            if failing:
                return 500
            with self.lock:
                if event_id not in self.handled:
                    self.handled.append(event_id)
            return 200
        finally:
            with self.lock:
                self.in_flight -= 1
                record["open"] = False


@contextmanager
def running(receiver: Receiver) -> Iterator[Receiver]:
    """Serve ``receiver`` on 127.0.0.1 (a free port) in a thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = receiver.answer(body, self.headers)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/billable"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
