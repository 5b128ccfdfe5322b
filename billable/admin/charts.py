"""Server-side SVG charts for the admin (no JavaScript, no CDN, nothing to vendor).

Each function returns inline ``<svg>`` markup built with ``format_html``, so every label —
offer names, SKUs, product names are user-supplied — is escaped. Every bar is a ``<rect
class="bar …">`` and every point a ``<circle class="point">`` with a ``<title>`` (the browser's
tooltip) and ``data-label`` / ``data-value`` attributes, one per value, zeros included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

Number = int | Decimal

WIDTH = 760
PLOT_LEFT = 8
PLOT_RIGHT = WIDTH - 8
#: Colours of the charts (the screenshot test looks for them).
NET = "#2f6fb0"
REFUNDED = "#d9534f"
OFFERS = "#6a51a3"
CONSUMPTION = "#2ca02c"
SUBSCRIPTIONS = "#ff7f0e"
AXIS = "#8a8a8a"


@dataclass(frozen=True)
class Bar:
    """One column: ``label`` (e.g. a day), and ``parts`` stacked bottom-up with their colour
    and CSS class."""

    label: str
    parts: tuple[tuple[Number, str, str], ...]

    @property
    def total(self) -> Number:
        return sum((value for value, _, _ in self.parts), Decimal(0))


def _scale(values: Sequence[Number]) -> Decimal:
    top = max((Decimal(v) for v in values), default=Decimal(0))
    return top if top > 0 else Decimal(1)


def _svg(name: str, height: int, title: str, body: SafeString) -> SafeString:
    return format_html(
        '<svg class="chart" data-chart="{}" role="img" width="{}" height="{}" '
        'viewBox="0 0 {} {}" xmlns="http://www.w3.org/2000/svg" shape-rendering="crispEdges">'
        "<title>{}</title>{}</svg>", name, WIDTH, height, WIDTH, height, title, body)


def _axis(height: int, top: Number, first: str, last: str) -> SafeString:
    """The base line, the largest value (top left) and the first and last labels."""
    bottom = height - 18
    return format_html(
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}"/>'
        '<text x="{}" y="12" font-size="11" fill="#555">max {}</text>'
        '<text x="{}" y="{}" font-size="11" fill="#555">{}</text>'
        '<text x="{}" y="{}" font-size="11" fill="#555" text-anchor="end">{}</text>',
        PLOT_LEFT, bottom, PLOT_RIGHT, bottom, AXIS, PLOT_LEFT, top,
        PLOT_LEFT, height - 4, first, PLOT_RIGHT, height - 4, last)


def column_chart(name: str, bars: Sequence[Bar], *, title: str, height: int = 180) -> SafeString:
    """Vertical stacked columns, one per bar, scaled to the tallest; the top value is printed."""
    plot_top, plot_bottom = 18, height - 18
    step = Decimal(PLOT_RIGHT - PLOT_LEFT) / max(len(bars), 1)
    width = max(step * Decimal("0.8"), Decimal(1))
    pixels = Decimal(plot_bottom - plot_top) / _scale([bar.total for bar in bars])
    rects = []
    for i, bar in enumerate(bars):
        x = Decimal(PLOT_LEFT) + step * i + (step - width) / 2
        y = Decimal(plot_bottom)
        for value, colour, css in bar.parts:
            h = Decimal(value) * pixels
            y -= h
            rects.append((css, x.quantize(Decimal("0.01")), y.quantize(Decimal("0.01")),
                          width.quantize(Decimal("0.01")), h.quantize(Decimal("0.01")), colour,
                          bar.label, value, f"{bar.label}: {value} ({css})"))
    body = format_html_join(
        "", '<rect class="bar {}" x="{}" y="{}" width="{}" height="{}" fill="{}" '
        'data-label="{}" data-value="{}"><title>{}</title></rect>', rects)
    first, last = (bars[0].label, bars[-1].label) if bars else ("", "")
    top_value = max((bar.total for bar in bars), default=0)
    return _svg(name, height, title, _axis(height, top_value, first, last) + body)


def bar_list(name: str, rows: Sequence[tuple[str, Number]], *, colour: str, title: str,
             row_height: int = 22) -> SafeString:
    """Horizontal bars, one row per ``(label, value)``, labels on the left."""
    label_width = 260
    height = max(len(rows), 1) * row_height + 8
    scale = Decimal(PLOT_RIGHT - label_width - 60) / _scale([value for _, value in rows])
    items = []
    for i, (label, value) in enumerate(rows):
        y = 4 + i * row_height
        width = (Decimal(value) * scale).quantize(Decimal("0.01"))
        items.append((8, y + 15, label[:40], label_width, y + 3, width, row_height - 8, colour,
                      label, value, f"{label}: {value}", label_width + width + 6, y + 15, value))
    body = format_html_join(
        "", '<text x="{}" y="{}" font-size="12" fill="#333">{}</text>'
        '<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="{}" data-label="{}" '
        'data-value="{}"><title>{}</title></rect>'
        '<text x="{}" y="{}" font-size="12" fill="#333">{}</text>', items)
    return _svg(name, height, title, body)


def line_chart(name: str, points: Sequence[tuple[str, Number]], *, colour: str, title: str,
               height: int = 160) -> SafeString:
    """A line through ``(label, value)`` points, with a dot on each (zero-based scale)."""
    plot_top, plot_bottom = 18, height - 18
    step = Decimal(PLOT_RIGHT - PLOT_LEFT - 8) / max(len(points) - 1, 1)
    pixels = Decimal(plot_bottom - plot_top) / _scale([value for _, value in points])
    coords = [((Decimal(PLOT_LEFT + 4) + step * i).quantize(Decimal("0.01")),
               (Decimal(plot_bottom) - Decimal(value) * pixels).quantize(Decimal("0.01")),
               label, value) for i, (label, value) in enumerate(points)]
    line = format_html('<polyline class="line" fill="none" stroke="{}" stroke-width="2" '
                       'points="{}"/>', colour, " ".join(f"{x},{y}" for x, y, _, _ in coords))
    dots = format_html_join(
        "", '<circle class="point" cx="{}" cy="{}" r="4" fill="{}" data-label="{}" '
        'data-value="{}"><title>{}: {}</title></circle>',
        ((x, y, colour, label, value, label, value) for x, y, label, value in coords))
    first, last = (points[0][0], points[-1][0]) if points else ("", "")
    top_value = max((value for _, value in points), default=0)
    return _svg(name, height, title, _axis(height, top_value, first, last) + line + dots)


__all__ = ["CONSUMPTION", "NET", "OFFERS", "REFUNDED", "SUBSCRIPTIONS", "Bar", "bar_list",
           "column_chart", "line_chart"]
