"""Progress of long management commands: a bar on a terminal, periodic lines otherwise.

On a terminal (the progress stream, stderr, is a TTY) a bar ``[#####.....] 1200/4000 label`` is
redrawn in place, at most ten times a second. Elsewhere (cron mail, systemd journal, CI logs,
a Celery worker) a line ``label: 1200/4000 (30%), 2.0 s`` is written every
:data:`LINE_INTERVAL` seconds — nothing for a run shorter than that, so short jobs stay quiet.
The command prints its own summary on stdout when it ends; stdout stays free of progress, so
its output can be parsed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from django.core.management.base import BaseCommand, OutputWrapper

#: Seconds between progress lines when not on a terminal.
LINE_INTERVAL = 10.0
#: Seconds between redraws of the bar.
REDRAW_INTERVAL = 0.1
WIDTH = 30


class Progress:
    """Count work done out of ``total`` (``None``: unknown) and show it on ``stream``."""

    def __init__(self, stream: Any, *, total: int | None, label: str,
                 interactive: bool | None = None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.label, self.clock = stream, label, clock
        self.total = max(int(total), 0) if total is not None else None
        self.done = 0
        self.interactive = (bool(getattr(stream, "isatty", lambda: False)())
                            if interactive is None else interactive)
        self.interval = LINE_INTERVAL if interval is None else interval
        self.started = self._shown_at = clock()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish()

    def advance(self, count: int = 1) -> None:
        """``count`` more items are done."""
        self.done += max(int(count), 0)
        now = self.clock()
        wait = REDRAW_INTERVAL if self.interactive else self.interval
        if now - self._shown_at >= wait:
            self._show(now)

    def finish(self) -> None:
        """Draw the full bar and end its line (on a terminal); lines need no ending."""
        if self.interactive and (self.total or self.done):
            self._show(self.clock(), final=True)

    def render(self, now: float | None = None) -> str:
        """The current state as one line (without the bar's carriage return)."""
        elapsed = (self.clock() if now is None else now) - self.started
        if self.interactive and self.total:
            filled = WIDTH * min(self.done, self.total) // self.total
            return f"[{'#' * filled}{'.' * (WIDTH - filled)}] {self.done}/{self.total} " \
                   f"{self.label}"
        if self.total:
            return (f"{self.label}: {self.done}/{self.total} "
                    f"({100 * self.done // self.total}%), {elapsed:.1f} s")
        return f"{self.label}: {self.done}, {elapsed:.1f} s"

    def _show(self, now: float, *, final: bool = False) -> None:
        self._shown_at = now
        text = self.render(now)
        if self.interactive:
            self._write("\r" + text, "\n" if final else "")
        else:
            self._write(text, "\n")

    def _write(self, text: str, ending: str) -> None:
        if isinstance(self.stream, OutputWrapper):
            self.stream.write(text, ending=ending)
        else:
            self.stream.write(text + ending)
        self.stream.flush()


def command_progress(command: BaseCommand, *, total: int | None, label: str) -> Progress:
    """A :class:`Progress` on the command's stderr."""
    return Progress(command.stderr, total=total, label=label)


__all__ = ["LINE_INTERVAL", "Progress", "command_progress"]
