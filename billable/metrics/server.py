"""Where scrapes read from, and a stand-alone metrics server for bot and worker processes."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.db import connections

from billable.metrics.backlogs import BacklogCollector


def scrape_registry() -> Any:
    """The registry a scrape reads: the process's default one, or — when
    ``PROMETHEUS_MULTIPROC_DIR`` is set (gunicorn with several workers) — one that aggregates
    every worker's files, plus the backlog gauges."""
    # reason: optional dependency (billable[metrics])
    import prometheus_client

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return prometheus_client.REGISTRY
    # reason: optional dependency (billable[metrics])
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(BacklogCollector())
    return registry


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr for every scrape."""


def start_http_server(port: int, addr: str = "127.0.0.1") -> tuple[Any, threading.Thread]:
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread; returns (server, thread).

    Each scrape runs in a thread of its own; the database connection the backlog gauges opened
    in it is closed when the scrape ends, so scrapes never pile up connections.
    """
    # reason: optional dependency (billable[metrics])
    import prometheus_client

    app = prometheus_client.make_wsgi_app(scrape_registry())

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            return app(environ, start_response)  # type: ignore[no-any-return]
        finally:
            connections.close_all()

    # reason: optional dependency (billable[metrics])
    from prometheus_client.exposition import ThreadingWSGIServer

    server = make_server(addr, port, serve, ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="billable-metrics", daemon=True)
    thread.start()
    return server, thread


__all__ = ["scrape_registry", "start_http_server"]
