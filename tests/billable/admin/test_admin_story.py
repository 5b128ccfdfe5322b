"""A whole admin story: catalog → quick offer → order confirmed → report → refund → report."""

from __future__ import annotations

import pytest
from django.urls import reverse

from billable.models import Offer, Product
from billable.services import OrderService, TransactionService

pytestmark = pytest.mark.django_db


def test_sell_confirm_report_refund(admin_client, user):
    add = admin_client.post(reverse("admin:billable_product_add"), {
        "product_key": "credits", "name": "Credits", "description": "", "product_type":
        "quantity", "is_active": "on", "metadata": "{}", "created_at_0": "2026-01-01",
        "created_at_1": "00:00:00", "offer_price": "5", "offer_currency": "usd",
        "offer_quantity": "100", "offer_period_unit": "forever", "offer_period_value": "",
    })
    assert add.status_code == 302
    product = Product.objects.get(product_key="CREDITS")
    assert Offer.objects.get(sku="GET_CREDITS").items.get().quantity == 100

    order = OrderService.create_order(user.pk, [{"sku": "get_credits", "quantity": 1}])
    changelist = reverse("admin:billable_order_changelist")
    admin_client.post(changelist, {"action": "confirm_orders", "_selected_action": [order.pk]})
    TransactionService.consume_quota(user.pk, "credits", amount=30, action_id="job-1")

    report_url = reverse("admin:billable_customer_product_report", args=[user.pk, product.pk])
    report = admin_client.get(report_url).context["report"]
    assert [(r.credit, r.debit, r.balance) for r in report.rows] == [(100, 0, 100),
                                                                     (0, 30, 70)]
    assert report.sources[0].source.label == f"Order #{order.pk}"

    admin_client.post(changelist, {"action": "refund_orders", "_selected_action": [order.pk]})
    report = admin_client.get(report_url).context["report"]
    assert report.rows[-1].debit == 70 and report.rows[-1].balance == 0
    assert report.spendable == 0
    assert report.sources[0].state_label == "Revoked"
