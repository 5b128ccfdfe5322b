"""The admin page (filters, SVG charts, permissions, escaping) and its CSV download."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from billable.dashboard import (
    register_subscriptions,
    subscription_sources,
    unregister_subscriptions,
)
from billable.selectors.dashboard import DashboardQuery, build_dashboard
from billable.selectors.dashboard_export import CSV_HEADER, dashboard_data
from tests.billable.dashboard.dataset import FIRST_DAY, LAST_DAY, make_dataset

pytestmark = pytest.mark.django_db
RANGE = {"start": FIRST_DAY.isoformat(), "end": LAST_DAY.isoformat()}


def page_url() -> str:
    return reverse("admin:billable_revenuedashboard_changelist")


def csv_url() -> str:
    return reverse("admin:billable_revenuedashboard_csv")


def count(pattern: str, html: str) -> int:
    return len(re.findall(pattern, html))


def test_the_page_draws_one_bar_per_day_and_the_other_charts(admin_client: Client) -> None:
    make_dataset()
    reply = admin_client.get(page_url(), RANGE)
    assert reply.status_code == 200
    html = reply.content.decode()
    assert "https://" not in html.replace("https://www.djangoproject.com", "")  # no CDN
    assert "<script" not in html.split('id="content-main"')[1]  # charts need no JavaScript
    for currency in ("XTR", "USD"):
        chart = html.split(f'data-chart="revenue-{currency}"')[1].split("</svg>")[0]
        assert count(r'class="bar net"', chart) == count(r'class="bar refunded"', chart) == 14
    data = dashboard_data(build_dashboard(DashboardQuery(FIRST_DAY, LAST_DAY)))
    offers = html.split('data-chart="offers-XTR"')[1].split("</svg>")[0]
    assert count(r'class="bar"', offers) == len(data["revenue"]["XTR"]["by_offer"])
    consumption = html.split('data-chart="consumption"')[1].split("</svg>")[0]
    assert count(r'class="bar"', consumption) == len(data["consumption"]) == 3
    line = html.split('data-chart="subscriptions-telegram_stars"')[1].split("</svg>")[0]
    assert count(r'class="point"', line) == 14
    assert f'{data["totals"]["paying_users"]}</span>' in html
    assert 'id="subscriptions-unavailable"' not in html


def test_the_index_links_the_dashboard(admin_client: Client) -> None:
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert "Revenue dashboard" in html and page_url() in html


def test_bad_filters_are_shown_on_the_page_with_status_400(admin_client: Client) -> None:
    reply = admin_client.get(page_url(), {"start": "2025-03-05", "end": "2025-03-01"})
    assert reply.status_code == 400
    assert b'data-error="invalid_date_range"' in reply.content
    reply = admin_client.get(csv_url(), {"start": "2020-01-01", "end": "2025-01-01"})
    assert reply.status_code == 400 and reply.content.startswith(b"date_range_too_long:")


def test_a_view_permission_is_needed(client: Client, make_user: Callable[..., Any]) -> None:
    staff = make_user(is_staff=True)
    client.force_login(staff)
    assert client.get(page_url()).status_code == 403
    assert client.get(csv_url()).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_revenuedashboard"))
    assert client.get(page_url()).status_code == 200
    assert client.get(csv_url()).status_code == 200
    client.logout()
    assert client.get(page_url()).status_code == 302  # to the login page


def test_user_supplied_names_are_escaped(admin_client: Client, make_product: Callable[..., Any],
                                         make_offer: Callable[..., Any],
                                         make_user: Callable[..., Any]) -> None:
    from billable.services import OrderService

    product = make_product("XSS", name="<img src=x onerror=alert(2)>")
    make_offer("EVIL", items=[(product, 1)], price="5", currency="USD",
               name='<script>alert(1)</script>"=HYPERLINK("http://x")')
    order = OrderService.create_order(make_user().pk, [{"sku": "EVIL"}])
    OrderService.pay_order(order.pk, payment_id="p-evil", payment_method="test")
    html = admin_client.get(page_url()).content.decode()
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    rows = list(csv.reader(io.StringIO(admin_client.get(csv_url()).content.decode())))
    labels = {row[4] for row in rows if row[0] == "revenue_by_offer"}
    assert labels == {'<script>alert(1)</script>"=HYPERLINK("http://x")'}  # not a formula start


def test_the_csv_holds_the_same_figures(admin_client: Client) -> None:
    make_dataset()
    reply = admin_client.get(csv_url(), {**RANGE, "bot": "222"})
    assert reply.status_code == 200
    assert reply["Content-Type"].startswith("text/csv")
    assert 'filename="revenue-2025-03-03-2025-03-16.csv"' in reply["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(reply.content.decode())))
    assert tuple(rows[0]) == CSV_HEADER
    cells = {tuple(row[:6]): row[6] for row in rows[1:]}
    assert len(cells) == len(rows) - 1  # one row per figure
    data = dashboard_data(build_dashboard(DashboardQuery(FIRST_DAY, LAST_DAY, "222")))
    assert cells[("period", "", "", "", "", "bot")] == "222"
    for currency, revenue in data["revenue"].items():
        for metric in ("gross", "refunded", "net", "orders", "refund_rate", "paying_users"):
            assert cells[("revenue", "", currency, "", "", metric)] == str(revenue[metric])
        for day in revenue["by_day"]:
            assert cells[("revenue_by_day", day["day"], currency, "", "", "net")] == day["net"]
        for offer in revenue["by_offer"]:
            key = ("revenue_by_offer", "", currency, offer["sku"], offer["name"], "units")
            assert cells[key] == str(offer["units"])
    assert cells[("conversion", "", "", "", "", "rate")] == str(data["conversion"]["rate"] or "")
    for line in data["consumption"]:
        assert cells[("consumption", "", "", line["product_key"], line["name"], "units")] == \
            str(line["units"])
    source = data["subscriptions"]["sources"][0]
    assert cells[("subscriptions", "", "", "telegram_stars", "Telegram Stars", "churned")] == \
        str(source["churned"])
    days = [row for row in rows if row[0] == "subscriptions_by_day"]
    assert [int(row[6]) for row in days] == [d["active"] for d in source["active_by_day"]]


def test_the_page_says_not_available_without_a_source(admin_client: Client) -> None:
    saved = subscription_sources()
    for contribution in saved:
        unregister_subscriptions(contribution.name)
    try:
        html = admin_client.get(page_url()).content.decode()
        rows = admin_client.get(csv_url()).content.decode().splitlines()
    finally:
        for contribution in saved:
            register_subscriptions(contribution.name, contribution.source,
                                   label=contribution.label)
    assert 'id="subscriptions-unavailable"' in html and "Not available" in html
    assert "subscriptions,,,,,available,false" in rows
