"""Every Python block of docs/*.md runs as pasted, in document order, one namespace per page.

The README's blocks run in ``tests/test_readme.py`` with the same runner
(``tests/examples/readme_runner.py``). A page's blocks share one namespace, as when a reader
pastes them one after another into ``python manage.py shell``; a block with a top-level
``await`` is awaited. Each page runs on an empty, migrated database; the checks below look at
what the snippets leave behind, so a block that silently stopped doing its job fails too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.examples.readme_runner import code_blocks, run_python_blocks

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("*.md")
               if code_blocks(path, "python"))


def _mounted(namespace: dict[str, Any]) -> None:
    from billable.urls import api

    assert str(namespace["urlpatterns"][0].pattern) == "api/v1/billing/"
    assert namespace["urlpatterns"][0].namespace == api.urls_namespace
    assert namespace["application"].api_prefix == "/api/v1/billing/"  # the lean ASGI stack
    assert namespace["DATABASES"]["default"]["OPTIONS"]["pool"]


def _bot_kit(namespace: dict[str, Any]) -> None:
    assert namespace["call"].method == "sendMessage"
    assert namespace["polling"].done()


def _orders(namespace: dict[str, Any]) -> None:
    order = namespace["order"]
    assert [(item.offer.sku, item.quantity) for item in order.items.all()] == [("PACK_100", 2)]


def _payments(namespace: dict[str, Any]) -> None:
    from billable.models import Order
    from bot_kit.models import TelegramPayment

    payment = TelegramPayment.objects.get(charge_id="c1")
    assert payment.status == "confirmed"
    assert Order.objects.get(pk=payment.order_id).status == "paid"
    receipt = namespace["session"].calls_to("sendMessage")[-1].params["text"]
    assert "Receipt id: c1" in receipt


def _growth(namespace: dict[str, Any]) -> None:
    from billable.ledger.audit import check_ledger
    from billable.models import AlertNotice, Gift, PromoCode

    assert Gift.objects.get(pk=namespace["gift"].pk).status == "claimed"
    assert Gift.objects.get(pk=namespace["gift_2"].pk).status == "ready"
    assert PromoCode.objects.get(code="SPRING20").uses_count == 2
    assert PromoCode.objects.filter(batch="xmas-2026").count() == 100
    assert AlertNotice.objects.get().delivery == "skipped"
    assert check_ledger() == []


def _scaling(namespace: dict[str, Any]) -> None:
    assert namespace["dp"].sub_routers, "setup_billing included no routers"


def _upgrading(namespace: dict[str, Any]) -> None:
    from billable.models import Order, Referral

    assert not Order.objects.exists() and not Referral.objects.exists()  # nothing to fix


def _events(namespace: dict[str, Any]) -> None:
    from django.test import RequestFactory

    from billable.events import sign

    view, secret = namespace["billable_events"], namespace["BILLABLE_EVENTS_SECRET"]
    body = b'{"created_at":"2026-11-30T14:00:00Z","data":{},"id":"doc-1","type":"ping"}'

    def post(signature: str) -> Any:
        return view(RequestFactory().post("/hooks", data=body, content_type="application/json",
                                          headers={"Billable-Signature": signature}))

    assert post(sign(secret, body)).status_code == 200
    assert post(sign(secret, body)).status_code == 200  # a duplicate is acknowledged too
    assert post(sign("forged", body)).status_code == 401
    assert namespace["endpoint"].secret.startswith("whsec_")


def _multibot(namespace: dict[str, Any]) -> None:
    from billable.models import ExternalIdentity
    from bot_kit.models import TelegramPayment

    sessions = namespace["sessions"]
    assert [sessions[b].calls_to("sendMessage")[0].params["text"].count("3") for b in (111, 222)
            ] == [1, 1]  # a trial granted by each bot
    assert set(ExternalIdentity.objects.values_list("provider", flat=True)) == {
        "telegram:111", "telegram:222"}
    payment = TelegramPayment.objects.get(charge_id="paid-at-b")
    assert (payment.bot_id, payment.status, payment.reason) == (222, "refunded", "wrong_bot")
    assert not sessions[111].calls_to("refundStarPayment")


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "docs/api.md": _mounted,
    "docs/events.md": _events,
    "docs/bot_kit.md": _bot_kit,
    "docs/growth.md": _growth,
    "docs/multibot.md": _multibot,
    "docs/orders.md": _orders,
    "docs/payments.md": _payments,
    "docs/scaling.md": _scaling,
    "docs/upgrading.md": _upgrading,
}


def test_every_page_with_python_blocks_is_run_here() -> None:
    assert set(PAGES) >= set(CHECKS)
    assert "docs/reference.md" in PAGES and len(PAGES) >= 7


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_run_in_document_order(page: str) -> None:
    namespace: dict[str, Any] = {"__name__": "docs"}

    ran = run_python_blocks(ROOT / page, namespace)

    assert ran == len(code_blocks(ROOT / page, "python"))
    CHECKS.get(page, lambda _: None)(namespace)
