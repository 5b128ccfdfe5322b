"""Property-based test: random sequences of wallet operations keep the ledger consistent.

A hypothesis ``RuleBasedStateMachine`` grants, consumes (with and without idempotency keys),
reserves, commits, releases, exchanges, expires and revokes in random order. After every step
the ledger invariant holds, no balance is negative, and each product's balance equals a simple
model of what the operations should have done.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from billable.exceptions import InsufficientFunds, QuotaExhausted
from billable.models import (
    Offer,
    OfferItem,
    Order,
    OrderItem,
    Product,
    QuotaBatch,
    Reservation,
    ReservationItem,
)
from billable.services import TransactionService as T

pytestmark = pytest.mark.django_db

KEYS = ["A", "B", "COIN"]
PACKS = [("PACK_A", "A", 5, None), ("PACK_B", "B", 3, 30), ("PACK_COIN", "COIN", 10, None)]


def build_catalog() -> None:
    for key in KEYS:
        Product.objects.create(product_key=key, name=key, product_type="quantity",
                               is_currency=key == "COIN")
    for sku, key, quantity, days in PACKS:
        offer = Offer.objects.create(sku=sku, name=sku)
        OfferItem.objects.create(offer=offer, product=Product.objects.get(product_key=key),
                                 quantity=quantity, period_unit="days" if days else "forever",
                                 period_value=days)
    swap = Offer.objects.create(sku="SWAP_A", name="swap", price=4, currency="COIN")
    OfferItem.objects.create(offer=swap, product=Product.objects.get(product_key="A"),
                             quantity=2)


class WalletMachine(RuleBasedStateMachine):
    """One user's wallet driven by random operations, checked against a model."""

    def __init__(self) -> None:
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        build_catalog()
        from django.contrib.auth import get_user_model

        self.user = get_user_model().objects.create(username="prop")
        self.expected = dict.fromkeys(KEYS, 0)
        self.keys: dict[str, tuple[str, int]] = {}
        self.holds: dict[str, int] = {}
        self.orders: list[int] = []

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    @rule(pack=st.sampled_from(PACKS), as_order=st.booleans(), count=st.integers(1, 3))
    def grant(self, pack: tuple[str, str, int, Any], as_order: bool, count: int) -> None:
        offer = Offer.objects.get(sku=pack[0])
        line = None
        if as_order:
            order = Order.objects.create(user=self.user)
            line = OrderItem.objects.create(order=order, offer=offer, quantity=count, price=0)
            self.orders.append(order.pk)
        T.grant_offer(self.user.id, offer, order_item=line)
        self.expected[pack[1]] += pack[2] * (count if as_order else 1)

    @rule(key=st.sampled_from(KEYS), amount=st.integers(1, 8),
          idem=st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3"])))
    def consume(self, key: str, amount: int, idem: str | None) -> None:
        result = T.consume_quota(self.user.id, key.lower(), amount=amount, idempotency_key=idem)
        if idem in self.keys:
            if self.keys[idem] == (key, amount):
                assert result["success"] and "idempotent" in result["message"]
            else:
                assert result["error"] == "idempotency_conflict"
            return
        enough = self.expected[key] >= amount
        assert result["success"] is enough, result
        if enough:
            self.expected[key] -= amount
            if idem:
                self.keys[idem] = (key, amount)

    @rule(key=st.sampled_from(KEYS), amount=st.integers(1, 6))
    def reserve(self, key: str, amount: int) -> None:
        try:
            rid = T.reserve_quota(self.user.id, key, amount)
        except (QuotaExhausted, InsufficientFunds):
            assert self.expected[key] < amount
            return
        self.expected[key] -= amount
        self.holds[rid] = amount

    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        if not self.holds:
            return
        rid = data.draw(st.sampled_from(sorted(self.holds)))
        amount = self.holds.pop(rid)
        part = data.draw(st.integers(1, amount))
        T.commit_reservation(rid, part)
        self.expected[self._hold_key(rid)] += amount - part

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        if not self.holds:
            return
        rid = data.draw(st.sampled_from(sorted(self.holds)))
        assert T.release_reservation(rid) is True
        self.expected[self._hold_key(rid)] += self.holds.pop(rid)

    @rule()
    def exchange(self) -> None:
        result = T.exchange(self.user.id, offer=Offer.objects.get(sku="SWAP_A"))
        assert result["success"] is (self.expected["COIN"] >= 4)
        if result["success"]:
            self.expected["COIN"] -= 4
            self.expected["A"] += 2

    @rule(data=st.data())
    def expire_one(self, data: st.DataObject) -> None:
        held = ReservationItem.objects.filter(reservation__state="HELD").values("quota_batch")
        candidates = list(QuotaBatch.objects.spendable().filter(user=self.user)
                          .exclude(pk__in=held).order_by("id"))
        if not candidates:
            return
        batch = data.draw(st.sampled_from(candidates))
        QuotaBatch.objects.filter(pk=batch.pk).update(expires_at=timezone.now())
        self.expected[batch.product.product_key] -= batch.remaining_quantity
        assert T.expire_batches() == 1

    @rule(data=st.data())
    def hold_times_out(self, data: st.DataObject) -> None:
        if not self.holds:
            return
        rid = data.draw(st.sampled_from(sorted(self.holds)))
        Reservation.objects.filter(pk=rid).update(expires_at=timezone.now() - timedelta(1))
        T.expire_batches()
        self.expected[self._hold_key(rid)] += self.holds.pop(rid)

    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        held = ReservationItem.objects.filter(reservation__state="HELD").values("quota_batch")
        free = [pk for pk in self.orders if not QuotaBatch.objects.filter(
            order_item__order_id=pk, pk__in=held).exists()]
        if not free:
            return
        order_pk = data.draw(st.sampled_from(free))
        for batch in QuotaBatch.objects.spendable().filter(order_item__order_id=order_pk):
            self.expected[batch.product.product_key] -= batch.remaining_quantity
        T.revoke_order_items(order_pk)
        self.orders.remove(order_pk)

    def _hold_key(self, rid: str) -> str:
        return str(Reservation.objects.get(pk=rid).product.product_key)

    @invariant()
    def ledger_is_consistent(self) -> None:
        assert T.check_ledger() == []
        assert not QuotaBatch.objects.filter(remaining_quantity__lt=0).exists()
        for key in KEYS:
            assert T.get_balance(self.user.id, key) == self.expected[key] >= 0


def test_random_operation_sequences_keep_the_ledger_invariant() -> None:
    run_state_machine_as_test(WalletMachine, settings=settings(
        max_examples=20, stateful_step_count=20, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
