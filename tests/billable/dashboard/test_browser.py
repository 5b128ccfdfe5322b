"""The dashboard rendered by a real headless Chromium against a live server.

The DOM Chromium built is checked for the SVG charts (one pair of bars per day per currency,
one point per day on the subscription line), and the screenshot — saved as
``docs/img/revenue-dashboard.png`` when ``BILLABLE_UPDATE_SCREENSHOTS=1`` — for the charts'
colours: in the rows where the revenue bars stand on their base line there are exactly as many
separate blue bars as days with net revenue, below the page header, and the offer, consumption
and subscription colours appear below them in page order.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from billable.admin import charts
from billable.selectors.dashboard import DashboardQuery, build_dashboard
from tests.billable.dashboard.chromium import (
    hex_colour,
    publish_screenshot,
    read_png,
    require_chromium,
    run_chromium,
    runs_per_row,
)
from tests.billable.dashboard.dataset import FIRST_DAY, LAST_DAY, make_dataset
from tests.billable.dashboard.urls import ADMIN_STATIC, login_link

SIZE = (1280, 2150)
pytestmark = [pytest.mark.urls("tests.billable.dashboard.urls"), pytest.mark.slow]


def chart(dom: str, name: str) -> str:
    return dom.split(f'data-chart="{name}"')[1].split("</svg>")[0]


def bars_with(day_values: list[Any]) -> int:
    return sum(1 for value in day_values if value > 0)


def test_chromium_renders_the_charts(live_server: Any, settings: Any, tmp_path: Path) -> None:
    binary = require_chromium()
    settings.STATIC_ROOT = str(ADMIN_STATIC)
    make_dataset()
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "x")
    page = reverse("admin:billable_revenuedashboard_changelist") + "?" + urlencode(
        {"start": FIRST_DAY.isoformat(), "end": LAST_DAY.isoformat()})
    dashboard = build_dashboard(DashboardQuery(FIRST_DAY, LAST_DAY))
    days = len(dashboard.period.days)

    dom = run_chromium(binary, live_server.url + login_link(admin.pk, page), "--dump-dom",
                       size=SIZE)
    assert "Revenue dashboard" in dom and "errornote" not in dom
    for revenue in dashboard.revenue:
        bars = chart(dom, f"revenue-{revenue.currency}")
        assert len(re.findall(r'<rect class="bar net"', bars)) == days
        assert len(re.findall(r'<rect class="bar refunded"', bars)) == days
    assert len(re.findall(r'<circle class="point"', chart(dom, "subscriptions-telegram_stars"))
               ) == days
    assert len(re.findall(r'<rect class="bar"', chart(dom, "consumption"))) == 3

    shot = tmp_path / "dashboard.png"
    run_chromium(binary, live_server.url + login_link(admin.pk, page), f"--screenshot={shot}",
                 size=SIZE)
    image = read_png(shot)
    assert (image.width, image.height) == SIZE

    net = runs_per_row(image, hex_colour(charts.NET))
    first = [revenue.by_day for revenue in dashboard.revenue]
    expected = [bars_with([day.net for day in series]) for series in first]
    assert min(net) > 150, "the revenue chart starts below the page header and filters"
    assert max(net.values()) == max(expected)
    assert set(expected) <= set(net.values()), (expected, sorted(set(net.values())))
    tops = {}
    for name in ("REFUNDED", "OFFERS", "SUBSCRIPTIONS", "CONSUMPTION"):
        rows = runs_per_row(image, hex_colour(getattr(charts, name)), min_width=6)
        assert len(rows) > 5, f"no {name} chart in the screenshot"
        tops[name] = min(rows)
    assert min(net) < tops["OFFERS"] < tops["SUBSCRIPTIONS"] < tops["CONSUMPTION"], tops

    publish_screenshot(shot, "revenue-dashboard.png")
