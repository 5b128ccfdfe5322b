"""``billable_deliver_events``: deliver due outbound events once, or keep delivering (``--loop``).

One pass claims due deliveries one at a time under a lease, POSTs each signed event and records
the outcome (see :mod:`billable.events.delivery`). Progress goes to stderr, the summary to
stdout. ``--loop`` repeats passes every ``--interval`` seconds until SIGINT/SIGTERM, finishing
the delivery in flight. Several workers may run at once; a killed worker loses nothing (its
leased delivery is retried when the lease runs out).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billable.events.delivery import Deliverer
from billable.management.outages import LoopGuard, outage_is_command_error
from billable.management.progress import command_progress


def _summary(counts: dict[str, int]) -> str:
    attempted = sum(counts.values())
    parts = ", ".join(f"{state}: {count}" for state, count in sorted(counts.items()))
    return f"Attempted {attempted} deliveries" + (f" ({parts})." if parts else ".")


class Command(BaseCommand):
    help = "Deliver due outbound events (signed HTTP POSTs) from the event outbox."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true",
                            help="Keep delivering until interrupted.")
        parser.add_argument("--interval", type=float, default=2.0,
                            help="Seconds between passes with --loop (default 2).")
        parser.add_argument("--limit", type=int, default=500,
                            help="Deliveries attempted per pass at most (default 500).")
        parser.add_argument("--lease", type=float, default=None,
                            help="Seconds a claimed delivery is held by this worker "
                                 "(default BILLABLE_EVENTS_LEASE).")
        parser.add_argument("--timeout", type=float, default=None,
                            help="HTTP timeout of one delivery in seconds, shorter than the "
                                 "lease (default BILLABLE_EVENTS_TIMEOUT).")

    @outage_is_command_error
    def handle(self, *args: Any, **options: Any) -> None:
        deliverer = Deliverer(lease=options["lease"], timeout=options["timeout"])
        if not 0 < deliverer.timeout < deliverer.lease:
            raise CommandError("The timeout must be positive and shorter than the lease.")
        if options["limit"] < 1:  # a worker that may attempt nothing would never deliver
            raise CommandError("--limit must be at least 1.")
        if not options["interval"] > 0:  # 0 or less: a busy loop of queries on an idle outbox
            raise CommandError("--interval must be a positive number of seconds.")
        if not options["loop"]:
            self.stdout.write(_summary(self._pass(deliverer, options["limit"])))
            return
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        stop = _stop_on_signals()
        guard = LoopGuard("billable_deliver_events --loop", stop)
        while not stop.is_set():
            counts = guard.run(lambda: self._pass(deliverer, options["limit"]))
            if counts is None:  # a database outage: logged, paused; the next pass retries
                continue
            if counts:
                self.stdout.write(_summary(counts))
                self.stdout.flush()
            else:
                stop.wait(options["interval"])

    def _pass(self, deliverer: Deliverer, limit: int) -> dict[str, int]:
        total = min(deliverer.due().count(), limit)
        with command_progress(self, total=total, label="deliveries") as progress:
            return deliverer.run_once(limit=limit, progress=lambda _state: progress.advance())


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT/SIGTERM (the delivery in flight finishes first)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(sig, lambda *_: stop.set())
    return stop
