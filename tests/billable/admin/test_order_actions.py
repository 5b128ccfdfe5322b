"""Order admin actions go through OrderService; status is never edited by hand."""

from __future__ import annotations

import pytest
from django.urls import reverse

from billable.models import Order, QuotaBatch
from billable.services import OrderService, TransactionService

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:billable_order_changelist"


@pytest.fixture
def order(user, make_product, make_offer):
    credits = make_product("CREDITS")
    make_offer("PACK_10", items=[(credits, 10)], price="9.99")
    return OrderService.create_order(user.pk, [{"sku": "pack_10", "quantity": 2}])


def _act(admin_client, action, *orders):
    response = admin_client.post(reverse(CHANGELIST), {
        "action": action, "_selected_action": [o.pk for o in orders]}, follow=True)
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def test_confirm_grants_once_even_when_repeated(admin_client, user, order):
    assert _act(admin_client, "confirm_orders", order) == [f"Confirmed: #{order.pk}."]
    _act(admin_client, "confirm_orders", order)
    order.refresh_from_db()
    assert (order.status, order.payment_method) == ("paid", "admin")
    assert QuotaBatch.objects.filter(user=user).count() == 1
    assert TransactionService.get_balance(user.pk, "credits") == 20


def test_refund_revokes_and_cancel_of_paid_order_is_refused(admin_client, user, order):
    OrderService.process_payment(order.pk, payment_id="p-1", payment_method="stars")
    texts = _act(admin_client, "cancel_orders", order)
    assert any(t.startswith(f"Order #{order.pk}:") for t in texts)
    order.refresh_from_db()
    assert order.status == "paid"
    _act(admin_client, "refund_orders", order)
    order.refresh_from_db()
    assert order.status == "refunded"
    assert TransactionService.get_balance(user.pk, "CREDITS") == 0


def test_cancelled_order_cannot_be_confirmed(admin_client, user, order):
    _act(admin_client, "cancel_orders", order)
    texts = _act(admin_client, "confirm_orders", order)
    order.refresh_from_db()
    assert order.status == "cancelled"
    assert any(f"Order #{order.pk}:" in t for t in texts)
    assert not QuotaBatch.objects.filter(user=user).exists()


def test_status_cannot_be_edited_on_the_change_form(admin_client, order):
    url = reverse("admin:billable_order_change", args=[order.pk])
    response = admin_client.post(url, {
        "status": "paid", "total_amount": "0", "metadata": '{"note": "vip"}',
        "items-TOTAL_FORMS": "0", "items-INITIAL_FORMS": "0"})
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert order.metadata == {"note": "vip"}
    assert str(order.total_amount) == "19.98"
