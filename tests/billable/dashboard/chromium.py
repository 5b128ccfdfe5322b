"""A real headless Chromium for the dashboard test, and what the test reads in its screenshots.

Debian's ``chromium`` package is installed on demand (``apt-get install``; root only). When
that is impossible the test is skipped with the reason — except under ``CI=true``, where it
fails instead. Every run gets a fresh profile directory and no network beyond the page asked
for (the flags below switch off Chromium's own background traffic).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-proxy-server", "--hide-scrollbars", "--force-device-scale-factor=1")
TIMEOUT = 90


def _apt_install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait = ["-o", "DPkg::Lock::Timeout=300"]  # another apt may be running: wait for it
    command = ["apt-get", *wait, "install", "-y", "--no-install-recommends", "chromium"]
    for step in ([command], [["apt-get", *wait, "update"], command]):
        try:
            if all(subprocess.run(c, env=env, capture_output=True, timeout=900).returncode == 0
                   for c in step):
                return
        except (OSError, subprocess.TimeoutExpired):
            continue


def find_chromium() -> str | None:
    """The chromium binary, installed with apt-get when missing and allowed."""
    found = shutil.which("chromium")
    if found or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    _apt_install()
    return shutil.which("chromium")


def require_chromium() -> str:
    """The chromium binary, or skip (fail under ``CI=true``) with the reason."""
    binary = find_chromium()
    if binary is None:
        reason = "chromium is not installed and cannot be installed here (needs root + apt)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def run_chromium(binary: str, url: str, *extra: str, size: tuple[int, int]) -> str:
    """Load ``url`` once in a fresh profile; return what Chromium printed on stdout."""
    with tempfile.TemporaryDirectory(prefix="d17-chromium-") as profile:
        done = subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
             *extra, url],
            capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@dataclass
class Image:
    """A screenshot's pixels as 8-bit RGB rows (three bytes per pixel)."""

    width: int
    height: int
    rows: list[bytes]

    def columns(self, y: int, colour: tuple[int, int, int]) -> list[int]:
        """The x of every pixel of row ``y`` that has exactly ``colour``."""
        row, pattern, found, at = self.rows[y], bytes(colour), [], 0
        while (at := row.find(pattern, at)) >= 0:
            if at % 3 == 0:
                found.append(at // 3)
            at += 1
        return found


def read_png(path: Path) -> Image:
    """Decode a PNG with Pillow (a dependency of matplotlib, in the dev extras)."""
    from PIL import Image as PILImage

    with PILImage.open(path) as opened:
        assert opened.format == "PNG"
        rgb = opened.convert("RGB")
    stride = rgb.width * 3
    raw = rgb.tobytes()
    return Image(rgb.width, rgb.height, [raw[y * stride:(y + 1) * stride]
                                         for y in range(rgb.height)])


def runs_per_row(image: Image, colour: tuple[int, int, int], *, min_width: int = 3
                 ) -> dict[int, int]:
    """For each row holding ``colour``: how many separate horizontal runs of it (at least
    ``min_width`` pixels wide) it has."""
    found: dict[int, int] = {}
    for y in range(image.height):
        runs, width, last = 0, 0, -2
        for x in image.columns(y, colour):
            if x != last + 1:
                runs += width >= min_width
                width = 0
            width, last = width + 1, x
        runs += width >= min_width
        if runs:
            found[y] = runs
    return found


def hex_colour(value: str) -> tuple[int, int, int]:
    return int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)


#: Where the browser tests leave their screenshots: ``docs/img`` (the pictures the docs show)
#: only when ``BILLABLE_UPDATE_SCREENSHOTS=1``, so an ordinary test run leaves the tree clean.
DOCS_IMG = Path(__file__).resolve().parents[3] / "docs" / "img"


def publish_screenshot(shot: Path, name: str) -> Path:
    """Copy ``shot`` to ``docs/img/<name>`` when asked to, else beside it; return the copy."""
    if os.environ.get("BILLABLE_UPDATE_SCREENSHOTS") == "1":
        target = DOCS_IMG / name
        target.parent.mkdir(exist_ok=True)
        if not target.exists() or target.read_bytes() != shot.read_bytes():
            target.write_bytes(shot.read_bytes())
        return target
    return shot
