"""Ledger rules that live in the models and the database: immutability, PROTECT, CHECKs."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from billable.models import IdempotencyKey, Offer, OfferItem, Product, QuotaBatch, Transaction
from billable.models.ledger import LedgerImmutable
from billable.services import TransactionService

pytestmark = pytest.mark.django_db


@pytest.fixture
def granted(user, make_product, make_offer):
    product = make_product("CREDITS")
    offer = make_offer("PACK", items=[(product, 5)])
    batch = TransactionService.grant_offer(user.id, offer)[0]
    return batch, Transaction.objects.get(quota_batch=batch)


def test_ledger_rows_cannot_be_updated(granted):
    _, row = granted
    row.amount = 500
    with pytest.raises(LedgerImmutable):
        row.save()
    with pytest.raises(LedgerImmutable):
        Transaction.objects.filter(pk=row.pk).update(amount=500)
    with pytest.raises(LedgerImmutable):
        Transaction.objects.bulk_update([row], ["amount"])
    assert Transaction.objects.get(pk=row.pk).amount == 5


def test_ledger_rows_cannot_be_deleted(granted):
    _, row = granted
    with pytest.raises(LedgerImmutable) as info:
        row.delete()
    assert info.value.code == "ledger_immutable"
    with pytest.raises(LedgerImmutable):
        Transaction.objects.filter(pk=row.pk).delete()
    assert Transaction.objects.filter(pk=row.pk).exists()


def test_batches_products_and_offers_with_ledger_rows_cannot_be_deleted(granted):
    batch, _ = granted
    with pytest.raises(ProtectedError):
        batch.delete()
    with pytest.raises(ProtectedError):
        Product.objects.get(product_key="CREDITS").delete()
    with pytest.raises(ProtectedError):
        Offer.objects.get(sku="PACK").delete()
    assert QuotaBatch.objects.filter(pk=batch.pk).exists()
    assert OfferItem.objects.count() == 1


def test_remaining_must_stay_within_initial(granted):
    batch, _ = granted
    with pytest.raises(IntegrityError), transaction.atomic():
        QuotaBatch.objects.filter(pk=batch.pk).update(remaining_quantity=6)


def test_idempotency_keys_are_unique_per_user_in_the_database(user):
    IdempotencyKey.objects.create(user=user, key="k", operation="consume", fingerprint="a")
    with pytest.raises(IntegrityError), transaction.atomic():
        IdempotencyKey.objects.create(user=user, key="k", operation="consume", fingerprint="b")


def test_merge_path_can_reassign_owners(granted, make_user):
    _, row = granted
    other = make_user()
    assert Transaction.objects.filter(pk=row.pk)._reassign_owner(other.pk) == 1
    assert Transaction.objects.get(pk=row.pk).user_id == other.pk
