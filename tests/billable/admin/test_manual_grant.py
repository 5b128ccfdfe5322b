"""Granting an offer by hand from the customer page goes through the ledger service."""

from __future__ import annotations

import pytest
from django.urls import reverse

from billable.models import Transaction
from billable.services import TransactionService

pytestmark = pytest.mark.django_db


@pytest.fixture
def offer(make_product, make_offer):
    return make_offer("GIFT_5", items=[(make_product("CREDITS"), 5)], price="0")


@pytest.fixture
def customer(user):
    from billable.models import ExternalIdentity

    ExternalIdentity.objects.create(provider="telegram", external_id="7", user=user)
    return user


def test_grant_credits_once_per_form_even_when_submitted_twice(admin_client, admin_user,
                                                               customer, offer):
    url = reverse("admin:billable_customer_grant", args=[customer.pk])
    assert admin_client.get(url).status_code == 200
    data = {"offer": offer.pk, "reason": "outage compensation", "token": "t-123"}
    for _ in range(2):
        response = admin_client.post(url, data)
        assert response.status_code == 302
    assert TransactionService.get_balance(customer.pk, "credits") == 5
    credit = Transaction.objects.get(user=customer)
    assert credit.action_type == "manual_grant"
    assert credit.metadata["reason"] == "outage compensation"
    assert credit.metadata["granted_by_id"] == admin_user.pk


def test_grant_needs_a_reason(admin_client, customer, offer):
    url = reverse("admin:billable_customer_grant", args=[customer.pk])
    response = admin_client.post(url, {"offer": offer.pk, "reason": "", "token": "t"})
    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    assert not Transaction.objects.exists()


def test_grant_requires_permission(client, django_user_model, customer, offer):
    staff = django_user_model.objects.create_user(username="staff", password="pw",
                                                  is_staff=True)
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(Permission.objects.get(codename="view_customer"))
    client.force_login(staff)
    url = reverse("admin:billable_customer_grant", args=[customer.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"offer": offer.pk, "reason": "x", "token": "t"}).status_code == 403
    assert not Transaction.objects.exists()
