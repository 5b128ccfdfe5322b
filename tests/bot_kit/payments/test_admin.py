"""Admin of the purchase flow: read-only payments, refunds requested through the outbox."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from bot_kit.models import RefundRequest, TelegramPayment

pytestmark = pytest.mark.django_db


@pytest.fixture
def payment() -> TelegramPayment:
    return TelegramPayment.objects.create(charge_id="<b>c1</b>", telegram_user_id=7,
                                          currency="XTR", total_amount=50, status="confirmed")


def test_payment_list_escapes_and_detail_is_read_only(admin_client: Any,
                                                      payment: TelegramPayment) -> None:
    listing = admin_client.get(reverse("admin:bot_kit_telegrampayment_changelist"))
    assert listing.status_code == 200
    assert b"<b>c1</b>" not in listing.content and b"&lt;b&gt;c1&lt;/b&gt;" in listing.content
    detail = admin_client.get(reverse("admin:bot_kit_telegrampayment_change",
                                      args=[payment.pk]))
    assert detail.status_code == 200
    assert b'name="charge_id"' not in detail.content
    post = admin_client.post(reverse("admin:bot_kit_telegrampayment_change", args=[payment.pk]),
                             {"charge_id": "changed"})
    assert post.status_code == 403
    assert TelegramPayment.objects.get(pk=payment.pk).charge_id == "<b>c1</b>"
    assert admin_client.get(reverse("admin:bot_kit_telegrampayment_add")).status_code == 403


def test_refund_action_queues_an_outbox_row(admin_client: Any, payment: TelegramPayment) -> None:
    url = reverse("admin:bot_kit_telegrampayment_changelist")
    response = admin_client.post(url, {"action": "request_refund",
                                       "_selected_action": [payment.pk]})
    assert response.status_code == 302
    refund = RefundRequest.objects.get(payment=payment)
    assert refund.state == "pending" and refund.requested_by.startswith("admin:")
    for name in ("refundrequest", "starsubscription"):
        assert admin_client.get(reverse(f"admin:bot_kit_{name}_changelist")).status_code == 200
