"""The outbox is written in the change's transaction: one event per business fact, never for a
rolled-back change, nothing at all without a subscribed endpoint."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from billable.events.catalog import EVENT_TYPES
from billable.models import EventDelivery, OutboxEvent, QuotaBatch
from billable.services import CustomerService, OrderService, TransactionService
from billable.services.trials import TrialService

pytestmark = pytest.mark.django_db


def types() -> list[str]:
    return list(OutboxEvent.objects.order_by("id").values_list("event_type", flat=True))


def test_no_endpoint_writes_nothing(user, make_product, make_offer):
    pack = make_offer("PACK", items=[(make_product("TOKENS"), 5)], price="3")
    order = OrderService.create_order(user.id, [{"sku": pack.sku}])
    OrderService.process_payment(order.id, "PAY-1")
    assert OutboxEvent.objects.count() == 0 and EventDelivery.objects.count() == 0


def test_payment_writes_payment_and_grant_events_with_one_delivery_each(
        user, make_product, make_offer, make_endpoint):
    endpoint = make_endpoint()
    pack = make_offer("PACK", items=[(make_product("TOKENS"), 5)], price="3")
    order = OrderService.create_order(user.id, [{"sku": pack.sku, "quantity": 2}])
    OrderService.process_payment(order.id, "PAY-1")

    assert types() == ["grant.created", "payment.confirmed"]
    paid = OutboxEvent.objects.get(event_type="payment.confirmed")
    assert paid.customer_id == str(user.id)
    assert paid.payload["order_id"] == order.id and paid.payload["status"] == "paid"
    assert paid.payload["items"] == [{"sku": "PACK", "quantity": 2, "price": "3.00"}]
    grant = OutboxEvent.objects.get(event_type="grant.created")
    assert grant.payload["product_key"] == "TOKENS" and grant.payload["quantity"] == 10
    assert grant.payload["source"] == "purchase" and grant.payload["offer_sku"] == "PACK"
    assert set(EventDelivery.objects.values_list("endpoint_id", "state")) == {
        (endpoint.id, "pending")}
    assert EventDelivery.objects.count() == 2


def test_endpoint_filter_and_inactive_endpoints(user, make_product, make_offer, make_endpoint):
    only_payments = make_endpoint(types=["payment.confirmed"])
    make_endpoint(is_active=False)
    pack = make_offer("PACK", items=[(make_product("TOKENS"), 5)], price="3")
    order = OrderService.create_order(user.id, [{"sku": pack.sku}])
    OrderService.process_payment(order.id, "PAY-1")
    assert types() == ["payment.confirmed"]
    assert list(EventDelivery.objects.values_list("endpoint_id", flat=True)) == [only_payments.id]


def test_rolled_back_change_leaves_no_event(user, make_product, make_offer, make_endpoint):
    make_endpoint()
    pack = make_offer("PACK", items=[(make_product("TOKENS"), 5)], price="3")
    order = OrderService.create_order(user.id, [{"sku": pack.sku}])

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        OrderService.process_payment(order.id, "PAY-1")
        assert set(types()) == {"grant.created", "payment.confirmed"}  # written, in the txn
        raise Abort
    assert OutboxEvent.objects.count() == 0 and EventDelivery.objects.count() == 0


def test_refund_cancel_merge_and_trial_events(user, make_user, make_product, make_offer,
                                              make_endpoint):
    make_endpoint(types=["order.refunded", "order.cancelled", "customer.merged",
                         "trial.claimed"])
    tokens = make_product("TOKENS")
    pack = make_offer("PACK", items=[(tokens, 5)], price="3")
    paid = OrderService.create_order(user.id, [{"sku": pack.sku}])
    OrderService.process_payment(paid.id, "PAY-1")
    OrderService.refund_order(paid.id, reason="asked")
    pending = OrderService.create_order(user.id, [{"sku": pack.sku}])
    OrderService.cancel_order(pending.id, reason="changed mind")
    free = make_offer("FREE", items=[(tokens, 1)], price="0")
    TrialService.claim_trial(user.id, free.sku)
    other = make_user()
    CustomerService.merge_customers(user.id, other.id)

    assert types() == ["order.refunded", "order.cancelled", "trial.claimed", "customer.merged"]
    merged = OutboxEvent.objects.get(event_type="customer.merged")
    assert merged.payload == {"target_user_id": user.id, "source_user_id": other.id}
    assert OutboxEvent.objects.get(event_type="order.cancelled").payload["status"] == "cancelled"


def test_quota_low_then_exhausted_once_per_change(user, make_product, make_offer, make_endpoint,
                                                  settings):
    settings.BILLABLE_EVENTS_QUOTA_LOW = 3
    make_endpoint(types=["quota.low", "quota.exhausted"])
    tokens = make_product("TOKENS")
    TransactionService.grant_offer(user.id, make_offer(items=[(tokens, 4)]))
    TransactionService.grant_offer(user.id, make_offer(items=[(tokens, 4)]))  # two batches

    TransactionService.consume_quota(user.id, "TOKENS", amount=2)  # 8 → 6: nothing
    assert types() == []
    TransactionService.consume_quota(user.id, "TOKENS", amount=4)  # 6 → 2 across 2 batches
    assert types() == ["quota.low"]
    low = OutboxEvent.objects.get()
    assert (low.payload["remaining"], low.payload["consumed"], low.payload["threshold"]) == (
        2, 4, 3)
    TransactionService.consume_quota(user.id, "TOKENS", amount=1)  # 2 → 1: already low
    assert types() == ["quota.low"]
    TransactionService.consume_quota(user.id, "TOKENS", amount=1)  # 1 → 0
    assert types() == ["quota.low", "quota.exhausted"]


def test_exhausting_two_batches_at_once_is_one_event(user, make_product, make_offer,
                                                     make_endpoint):
    make_endpoint(types=["quota.exhausted", "quota.low"])
    tokens = make_product("TOKENS")
    for _ in range(2):
        TransactionService.grant_offer(user.id, make_offer(items=[(tokens, 2)]))
    TransactionService.consume_quota(user.id, "TOKENS", amount=4)
    assert types() == ["quota.exhausted"]
    assert OutboxEvent.objects.get().payload["consumed"] == 4


def test_batch_expired_event_names_what_was_left(user, make_product, make_offer, make_endpoint):
    make_endpoint(types=["batch.expired"])
    tokens = make_product("TOKENS")
    batch, = TransactionService.grant_offer(user.id, make_offer(items=[(tokens, 5)]))
    TransactionService.consume_quota(user.id, "TOKENS", amount=2)
    QuotaBatch.objects.filter(pk=batch.pk).update(expires_at=timezone.now() - timedelta(1))
    TransactionService.expire_batches()
    expired = OutboxEvent.objects.get()
    assert expired.event_type == "batch.expired"
    assert expired.payload["expired_quantity"] == 3 and expired.payload["batch_id"] == str(
        batch.pk)


def test_every_catalogued_type_has_a_source():
    from billable.events.catalog import SOURCES

    produced = set().union(*(source.types for source in SOURCES))
    assert produced == set(EVENT_TYPES) and len(EVENT_TYPES) == 13
