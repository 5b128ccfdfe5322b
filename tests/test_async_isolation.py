"""Async tests on the rolled-back database write inside the test's own transaction."""

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from billable.models import Product


@pytest.mark.django_db
async def test_async_writes_happen_inside_the_test_transaction():
    await Product.objects.acreate(product_key="ISOLATED", name="Isolated")

    def state() -> tuple[bool, bool]:
        connection = connections["default"]
        exists = Product.objects.filter(product_key="isolated").exists()
        return connection.in_atomic_block, exists

    in_atomic_block, exists = await sync_to_async(state)()
    assert in_atomic_block, "the worker thread must write inside the rolled-back test transaction"
    assert exists


@pytest.mark.django_db
def test_rows_of_an_earlier_async_test_did_not_survive():
    assert not Product.objects.filter(product_key="ISOLATED").exists()
