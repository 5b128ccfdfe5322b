"""The support pages rendered by a real headless Chromium against a live server.

The DOM Chromium built is checked (the ``@username`` search finds the customer and only them;
the customer page shows identities, balances, holds, orders and payments with links; the offer
form has product autocomplete and a whole Star price; the sidebar says "Quota batches"), and the
screenshots are saved as ``docs/img/admin-*.png`` (used by docs/admin.md) when
``BILLABLE_UPDATE_SCREENSHOTS=1``.

The pages are served by a one-request-at-a-time live server (:func:`serial_server`): the admin
pages make Chromium fetch ``jsi18n`` and static files in parallel, and on SQLite the threads of
pytest-django's ``live_server`` would share one in-memory connection at once (a segfault).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.billable.admin.support_data import ALICE_TG_ID, build_support_data
from tests.billable.dashboard.chromium import (
    publish_screenshot,
    read_png,
    require_chromium,
    run_chromium,
)
from tests.billable.dashboard.urls import ADMIN_STATIC, login_link


@pytest.fixture
def serial_server(transactional_db: Any, settings: Any) -> Iterator[str]:
    """A live server answering one request at a time (``Connection: close``) on the test
    database; yields its base URL."""
    from django.core.servers.basehttp import WSGIServer
    from django.db import connections
    from django.test.testcases import LiveServerThread, QuietWSGIRequestHandler, _StaticFilesHandler

    class SerialServerThread(LiveServerThread):
        def _create_server(self, connections_override: Any = None) -> WSGIServer:
            return WSGIServer((self.host, self.port), QuietWSGIRequestHandler,
                              allow_reuse_address=False)

    settings.STATIC_ROOT = str(ADMIN_STATIC)
    shared = {conn.alias: conn for conn in connections.all()
              if conn.vendor == "sqlite" and conn.is_in_memory_db()}
    for conn in shared.values():
        conn.inc_thread_sharing()
    thread = SerialServerThread("127.0.0.1", _StaticFilesHandler, connections_override=shared,
                                port=0)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    try:
        if thread.error:
            raise thread.error
        yield f"http://127.0.0.1:{thread.port}"
    finally:
        thread.terminate()
        for conn in shared.values():
            conn.dec_thread_sharing()


pytestmark = [pytest.mark.urls("tests.billable.dashboard.urls"), pytest.mark.slow]


def render(binary: str, base: str, user_pk: int, page: str, shot: Path,
           size: tuple[int, int]) -> str:
    """The DOM of ``page`` as Chromium built it, and its screenshot saved in ``shot``."""
    dom = run_chromium(binary, base + login_link(user_pk, page), "--dump-dom", size=size)
    run_chromium(binary, base + login_link(user_pk, page), f"--screenshot={shot}", size=size)
    image = read_png(shot)
    assert (image.width, image.height) == size
    assert len({row for row in image.rows[::40]}) > 5, "the screenshot is blank"
    return dom


def publish(shot: Path, name: str) -> None:
    publish_screenshot(shot, name)


def test_chromium_renders_the_support_pages(serial_server: str, tmp_path: Path) -> None:
    binary = require_chromium()
    data = build_support_data()
    admin = get_user_model().objects.create_superuser("support", "support@example.com", "x")
    base = serial_server

    search = reverse("admin:billable_customer_changelist") + "?" + urlencode(
        {"q": "@alice_stars"})
    dom = render(binary, base, admin.pk, search, tmp_path / "search.png", (1280, 520))
    found = re.findall(r'<th class="field-__str__"><a href="([^"]+)">([^<]+)</a>', dom)
    assert [name for _, name in found] == ["Alice Moreau (@alice_stars)"]
    assert found[0][0].startswith(reverse("admin:billable_customer_change",
                                          args=[data.alice.pk]))
    assert "Bob (@bobby)" not in dom and "billable_telegram_" not in dom
    assert f"telegram:{ALICE_TG_ID}" in dom
    publish(tmp_path / "search.png", "admin-customer-search.png")

    page = reverse("admin:billable_customer_change", args=[data.alice.pk])
    dom = render(binary, base, admin.pk, page, tmp_path / "customer.png", (1280, 980))
    assert "Alice Moreau (@alice_stars)" in dom
    assert "Quota batches" in dom and "batchs" not in dom.lower()  # the sidebar
    assert re.search(r'href="/admin/billable/externalidentity/\d+/change/"', dom)
    assert "<strong>83</strong>" in dom  # 100 bought − 12 used − 5 held
    holds = dom.split('class="billable-holds"')[1].split("</table>")[0]
    assert re.search(r'href="/admin/billable/reservation/[^"]+/change/"', holds)
    orders = dom.split('class="billable-orders"')[1].split("</table>")[0]
    assert f"/admin/billable/order/{data.paid_order.pk}/change/" in orders
    assert f"/admin/billable/order/{data.pending_order.pk}/change/" in orders
    assert "50 XTR" in orders and "250 XTR" in orders and "50.00" not in dom
    payments = dom.split('class="billable-payments"')[1].split("</table>")[0]
    assert "stxAbC123-charge" in payments and "/admin/bot_kit/telegrampayment/" in payments
    publish(tmp_path / "customer.png", "admin-customer.png")

    page = reverse("admin:billable_offer_change", args=[data.pack.pk])
    dom = render(binary, base, admin.pk, page, tmp_path / "offer.png", (1280, 1400))
    assert re.search(r'<input[^>]*name="price"[^>]*value="50"', dom)
    # select2 ran in the browser: the product select became an autocomplete widget
    assert re.search(r'<select name="items-0-product"[^>]*admin-autocomplete', dom)
    assert "select2-container" in dom and "Image credits" in dom
    publish(tmp_path / "offer.png", "admin-offer.png")

