"""A tiny stderr progress bar (no dependency): ``[#####.....]  12/40  label``.

On a terminal the bar is redrawn in place (at most ten times a second); when stderr is not a
terminal (CI logs, the smoke test) only the start and the end are printed, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

WIDTH = 28


class Progress:
    """Count ``total`` steps of one named task; use as a context manager and call ``tick()``."""

    def __init__(self, label: str, total: int, *, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(int(total), 1)
        self.done = 0
        self.stream = stream or sys.stderr
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.perf_counter()
        self._drawn_at = 0.0

    def __enter__(self) -> Progress:
        if not self.interactive:
            self.stream.write(f"  .. {self.label} ({self.total} steps)\n")
            self.stream.flush()
        self._draw(force=True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish(failed=exc is not None)

    def tick(self, steps: int = 1, *, status: str = "") -> None:
        """Advance by ``steps``; ``status`` is shown after the label (e.g. the current size)."""
        self.done = min(self.done + steps, self.total)
        self._draw(status=status)

    def finish(self, *, failed: bool = False) -> None:
        elapsed = time.perf_counter() - self.started
        state = "FAILED" if failed else "done"
        if self.interactive:
            self._draw(force=True)
            self.stream.write("\n")
        self.stream.write(f"  {state}: {self.label} in {elapsed:.1f}s\n")
        self.stream.flush()

    def render(self, status: str = "") -> str:
        """The bar as text (also used by tests)."""
        filled = int(WIDTH * self.done / self.total)
        bar = "#" * filled + "." * (WIDTH - filled)
        tail = f"  {status}" if status else ""
        return f"[{bar}] {self.done:>4}/{self.total:<4} {self.label}{tail}"

    def _draw(self, *, status: str = "", force: bool = False) -> None:
        if not self.interactive:
            return
        now = time.perf_counter()
        if not force and now - self._drawn_at < 0.1 and self.done < self.total:
            return
        self._drawn_at = now
        self.stream.write("\r" + self.render(status)[:110].ljust(110))
        self.stream.flush()
