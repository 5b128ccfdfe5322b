"""The ledger (and the other history tables) cannot be edited or deleted from the admin."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from billable.models import IdempotencyKey, QuotaBatch, Reservation, Transaction

pytestmark = pytest.mark.django_db

READ_ONLY = [Transaction, QuotaBatch, IdempotencyKey, Reservation]


@pytest.fixture
def debit(user, make_product, grant, spend):
    batch = grant(user, make_product("CREDITS"), 5)
    return spend(batch, 2)


@pytest.mark.parametrize("model", READ_ONLY, ids=lambda m: m.__name__)
def test_no_add_change_or_delete_permission(admin_user, model):
    request = RequestFactory().get("/")
    request.user = admin_user
    model_admin = admin.site._registry[model]
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    assert "delete_selected" not in model_admin.get_actions(request)
    assert model_admin.has_view_permission(request)


def test_posting_to_a_ledger_row_changes_nothing(admin_client, debit):
    url = reverse("admin:billable_transaction_change", args=[debit.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    response = admin_client.post(url, {"amount": "999", "direction": "CREDIT"})
    assert response.status_code == 403
    debit.refresh_from_db()
    assert (debit.amount, debit.direction) == (2, "DEBIT")


def test_delete_page_and_bulk_delete_are_refused(admin_client, debit):
    delete_url = reverse("admin:billable_transaction_delete", args=[debit.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    changelist = reverse("admin:billable_transaction_changelist")
    admin_client.post(changelist, {"action": "delete_selected", "_selected_action": [debit.pk],
                                   "post": "yes"})
    assert Transaction.objects.filter(pk=debit.pk).exists()


def test_batch_page_cannot_change_remaining_quantity(admin_client, debit):
    batch = debit.quota_batch
    url = reverse("admin:billable_quotabatch_change", args=[batch.pk])
    assert admin_client.post(url, {"remaining_quantity": "500"}).status_code == 403
    batch.refresh_from_db()
    assert batch.remaining_quantity == 3


def test_transaction_list_shows_signed_amounts(admin_client, debit):
    response = admin_client.get(reverse("admin:billable_transaction_changelist"))
    content = response.content.decode()
    assert "+5" in content
    assert "−2" in content


def test_batch_page_lists_its_rows_and_links_to_all_of_them(admin_client, debit):
    batch = debit.quota_batch
    page = admin_client.get(reverse("admin:billable_quotabatch_change", args=[batch.pk]))
    content = page.content.decode()
    assert "+5" in content and "−2" in content
    link = reverse("admin:billable_transaction_changelist") + f"?quota_batch__exact={batch.pk}"
    assert link in content
    filtered = admin_client.get(link)
    assert filtered.status_code == 200
    assert {t.quota_batch_id for t in filtered.context["cl"].result_list} == {batch.pk}
