"""Fetch what some tests install on first use, before the suite needs it.

``python3 dev.py test`` starts this beside the lint and type checks, so that a fresh machine
downloads n8n (~4 minutes, for the real-n8n tests of the PostgreSQL session), Chromium and the
published billable 0.2 while other work runs, instead of stalling the suite in the middle. Each
step is the tests' own installer (under its own lock or atomic rename, so a test that needs the
thing while it is still being fetched waits for it or installs it itself). A failure here is only
printed: the test that needs the thing reports it (skipped, or failed under ``CI=true``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def _n8n() -> object:
    from tests.examples.n8n_runtime import ensure_n8n

    return ensure_n8n()


def _chromium() -> object:
    from tests.billable.dashboard.chromium import find_chromium

    return find_chromium()


def _billable_0_2() -> object:
    from tests.billable.upgrades.support import legacy_package

    return legacy_package()


STEPS: dict[str, Callable[[], object]] = {
    "chromium": _chromium, "billable 0.2": _billable_0_2, "n8n": _n8n}


def main(names: list[str]) -> int:
    for name in names or list(STEPS):
        started = time.monotonic()
        try:
            found = STEPS[name]()
        except BaseException as exc:  # reported; the test that needs it decides
            print(f"prefetch {name}: not available ({type(exc).__name__}: {exc})", flush=True)
            continue
        print(f"prefetch {name}: {found} ({time.monotonic() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
