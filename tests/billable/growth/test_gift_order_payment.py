"""A gift's order paid by the generic paths: the REST confirm and the admin action pay it as a
gift (nothing granted, the gift claimable); ``OrderService.pay_order`` refuses it.

Before, all three granted the goods to the buyer and left the gift ``pending`` for ever:
neither claimable nor refundable as a gift.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.urls import reverse

from billable.exceptions import OrderStateError
from billable.growth.gifts import GiftService
from billable.ledger.audit import check_ledger
from billable.models import Gift, Order, QuotaBatch
from billable.services import OrderService, TransactionService

pytestmark = pytest.mark.django_db(transaction=True)
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {settings.BILLABLE_API_TOKEN}"}


def confirm(client: Any, order_id: int, body: dict[str, Any] | None = None) -> Any:
    return client.post(f"/api/v1/billing/orders/{order_id}/confirm", body or {},
                       content_type="application/json", **AUTH)


def test_order_service_refuses_to_grant_a_gift_order(make_user, shop) -> None:
    buyer = make_user()
    gift = GiftService.create_gift(buyer.pk, "PACK_10")
    with pytest.raises(OrderStateError) as caught:
        OrderService.pay_order(gift.order_id, payment_id="ch-1", payment_method="stripe")
    assert "pays for a gift" in str(caught.value)
    assert Order.objects.get(pk=gift.order_id).status == "pending"
    assert not QuotaBatch.objects.exists()
    # the refusal wrote nothing: the gift path still pays it with the same payment id
    GiftService.pay_gift_order(gift.order_id, payment_id="ch-1", payment_method="stripe")
    assert Gift.objects.get(pk=gift.pk).status == "ready"


def test_rest_confirm_pays_a_gift_order_as_a_gift(client, make_user, shop) -> None:
    buyer, friend = make_user(), make_user()
    gift = GiftService.create_gift(buyer.pk, "PACK_10")

    reply = confirm(client, gift.order_id, {"payment_id": "web-1", "payment_method": "stripe"})
    assert reply.status_code == 200, reply.content
    body = reply.json()
    assert body["success"] is True
    assert body["message"] == "Order paid; the gift is ready to be claimed"
    assert body["data"]["status"] == "paid" and body["data"]["payment_id"] == "web-1"
    assert Gift.objects.get(pk=gift.pk).status == "ready"
    assert TransactionService.get_balance(buyer.pk, "CREDITS") == 0  # the buyer gets nothing

    again = confirm(client, gift.order_id, {"payment_id": "web-1", "payment_method": "stripe"})
    assert again.status_code == 200 and again.json()["data"]["status"] == "paid"
    other = confirm(client, gift.order_id, {"payment_id": "web-2"})
    assert other.status_code == 409

    GiftService.claim(gift.token, user_id=friend.pk)
    assert TransactionService.get_balance(friend.pk, "CREDITS") == 10
    assert TransactionService.get_balance(buyer.pk, "CREDITS") == 0
    assert check_ledger() == []


def test_rest_confirm_of_an_ordinary_order_is_unchanged(client, make_user, shop) -> None:
    buyer = make_user()
    order = OrderService.create_order(buyer.pk, [{"sku": "PACK_10", "quantity": 1}])
    reply = confirm(client, order.pk, {"payment_id": "web-3"})
    assert reply.status_code == 200
    assert reply.json()["message"] == "Order paid and products activated"
    assert TransactionService.get_balance(buyer.pk, "CREDITS") == 10


def test_admin_confirm_action_pays_a_gift_order_as_a_gift(admin_client, make_user,
                                                          shop) -> None:
    buyer = make_user()
    gift = GiftService.create_gift(buyer.pk, "PACK_10")
    plain = OrderService.create_order(buyer.pk, [{"sku": "PACK_10", "quantity": 1}])
    admin_client.post(reverse("admin:billable_order_changelist"), {
        "action": "confirm_orders", "_selected_action": [gift.order_id, plain.pk]})
    assert Order.objects.get(pk=gift.order_id).status == "paid"
    assert Gift.objects.get(pk=gift.pk).status == "ready"
    assert Order.objects.get(pk=plain.pk).status == "paid"
    assert TransactionService.get_balance(buyer.pk, "CREDITS") == 10  # the plain order only
