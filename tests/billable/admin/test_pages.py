"""Every admin page of every billable model renders for a superuser."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

from billable.models import (
    Customer,
    ExternalIdentity,
    IdempotencyKey,
    Offer,
    OfferItem,
    Order,
    OrderItem,
    Product,
    QuotaBatch,
    Referral,
    Reservation,
    Transaction,
    TrialHistory,
)

pytestmark = pytest.mark.django_db

MODELS = [Product, Offer, QuotaBatch, Transaction, Order, TrialHistory, ExternalIdentity,
          Referral, Customer, IdempotencyKey, Reservation]
WITH_ADD_PAGE = [Product, Offer, TrialHistory, ExternalIdentity, Referral]


def test_every_billable_model_is_registered():
    registered = {model for model in admin.site._registry if model._meta.app_label == "billable"}
    assert set(MODELS) <= registered


@pytest.fixture
def world(make_user, make_product, make_offer, grant, spend):
    """One customer with an identity, a paid order, a batch, a debit, a hold and a referral."""
    alice, bob = make_user(username="alice"), make_user(username="bob")
    credits = make_product("CREDITS")
    offer = make_offer("PACK_10", items=[(credits, 10)], price="9.99")
    order = Order.objects.create(user=alice, total_amount=offer.price, status="paid")
    OrderItem.objects.create(order=order, offer=offer, quantity=1, price=offer.price)
    batch = grant(alice, credits, 10, offer=offer)
    spend(batch, 3, action_id="job-1")
    from django.utils import timezone

    Reservation.objects.create(user=alice, product=credits, amount=1,
                               expires_at=timezone.now())
    IdempotencyKey.objects.create(user=alice, key="k-1", operation="consume", fingerprint="f")
    ExternalIdentity.objects.create(provider="telegram", external_id="42", user=alice)
    TrialHistory.objects.create(identity_type="telegram",
                                identity_hash=TrialHistory.generate_identity_hash(42))
    Referral.objects.create(referrer=bob, referee=alice)
    return {"alice": alice, "batch": batch}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelist_and_change_pages_render(admin_client, world, model):
    opts = model._meta
    changelist = admin_client.get(reverse(f"admin:billable_{opts.model_name}_changelist"))
    assert changelist.status_code == 200
    obj = model._default_manager.order_by("pk").first()
    if model is Customer:
        obj = Customer.objects.get(pk=world["alice"].pk)
    assert obj is not None
    change = admin_client.get(reverse(f"admin:billable_{opts.model_name}_change", args=[obj.pk]))
    assert change.status_code == 200


@pytest.mark.parametrize("model", WITH_ADD_PAGE, ids=lambda m: m.__name__)
def test_add_pages_render(admin_client, model):
    response = admin_client.get(reverse(f"admin:billable_{model._meta.model_name}_add"))
    assert response.status_code == 200


@pytest.mark.parametrize("model", [QuotaBatch, Transaction, Order, Customer, IdempotencyKey,
                                   Reservation], ids=lambda m: m.__name__)
def test_history_and_accounts_cannot_be_added_here(admin_client, model):
    response = admin_client.get(reverse(f"admin:billable_{model._meta.model_name}_add"))
    assert response.status_code == 403


def test_changelist_search_and_filters_do_not_crash(admin_client, world):
    for name, query in [("transaction", "?q=alice&direction__exact=DEBIT"),
                        ("quotabatch", "?q=credits&spendable=yes"),
                        ("quotabatch", "?spendable=no"),
                        ("order", "?q=not-a-number"),
                        ("customer", "?q=42")]:
        response = admin_client.get(reverse(f"admin:billable_{name}_changelist") + query)
        assert response.status_code == 200, (name, query)


def test_customer_list_shows_only_billing_accounts(admin_client, world):
    get_user_model().objects.create(username="stranger")
    response = admin_client.get(reverse("admin:billable_customer_changelist"))
    assert b"alice" in response.content
    assert b"stranger" not in response.content


def test_offer_item_inline_is_shown_on_offer_page(admin_client, world):
    offer = Offer.objects.get(sku="PACK_10")
    response = admin_client.get(reverse("admin:billable_offer_change", args=[offer.pk]))
    assert OfferItem.objects.filter(offer=offer).exists()
    assert b"items-TOTAL_FORMS" in response.content


@pytest.mark.parametrize("name", ["transaction", "quotabatch", "customer", "order"])
def test_changelist_query_count_does_not_grow_with_rows(admin_client,
                                                        make_user, make_product, grant, spend,
                                                        name):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    product = make_product("CREDITS")
    url = reverse(f"admin:billable_{name}_changelist")

    def add_customer():
        customer = make_user()
        ExternalIdentity.objects.create(provider="telegram", external_id=customer.username,
                                        user=customer)
        Order.objects.create(user=customer)
        spend(grant(customer, product, 5), 1)

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(url).status_code == 200
        return len(ctx.captured_queries)

    add_customer()
    few = count_queries()
    for _ in range(5):
        add_customer()
    assert count_queries() == few
