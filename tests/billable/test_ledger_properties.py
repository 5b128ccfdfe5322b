"""Property-based test: random sequences of wallet operations keep the ledger consistent.

A hypothesis ``RuleBasedStateMachine`` drives three accounts through grants and paid orders of
every product type (counters, expiring counters, 30-day periods, unlimited access), consumption
with and without idempotency keys, holds (commit, release, time-out), exchanges into every
product type (and refused ones: an entitlement posing as a currency, an offer without items),
trials, customer merges, expiry and refunds of chained periods. After every step the ledger
invariant holds, no balance is negative, and every balance, access window and trial flag
equals the reference model of ``tests/billable/ledger_model.py``. It runs on SQLite and on
PostgreSQL (the CI runs both).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from billable.exceptions import (
    BillableError,
    InsufficientFunds,
    QuotaExhausted,
    TrialAlreadyUsed,
)
from billable.models import (
    Offer,
    OfferItem,
    Product,
    QuotaBatch,
    Reservation,
    ReservationItem,
    Transaction,
)
from billable.services import CustomerService, OrderService
from billable.services import TransactionService as T
from billable.services.trials import TrialService
from tests.billable.ledger_model import COUNTERS, PERIOD, UNLIMITED, Interval, Model, Wallet

pytestmark = pytest.mark.django_db

USERS = 3
TOLERANCE = timedelta(seconds=30)
#: sku → (price, currency, [(product key, quantity, period days or None)])
OFFERS: dict[str, tuple[str, str, list[tuple[str, int, int | None]]]] = {
    "PACK_A": ("1", "USD", [("A", 5, None)]),
    "PACK_B": ("1", "USD", [("B", 3, 30)]),
    "PACK_COIN": ("1", "USD", [("COIN", 10, None)]),
    "MONTH": ("1", "USD", [("P", 1, 30)]),
    "LIFETIME": ("1", "USD", [("U", 1, None)]),
    "SWAP_A": ("4", "COIN", [("A", 2, None)]),
    "SWAP_P": ("6", "COIN", [("P", 1, 30)]),
    "SWAP_U": ("5", "COIN", [("U", 1, None)]),
    "SWAP_MIX": ("3", "COIN", [("A", 1, None), ("P", 1, 7)]),
    "SWAP_GOLD": ("1", "GOLD", [("A", 100, None)]),
    "SWAP_EMPTY": ("1", "COIN", []),
    "TRIAL": ("0", "USD", [("T", 2, None)]),
}
BOUGHT = ["PACK_A", "PACK_B", "PACK_COIN", "MONTH", "LIFETIME"]
SWAPS = ["SWAP_A", "SWAP_P", "SWAP_U", "SWAP_MIX"]
KINDS = {"A": "quantity", "B": "quantity", "COIN": "quantity", "T": "quantity",
         "P": "period", "U": "unlimited", "GOLD": "quantity"}


def build_catalog() -> None:
    products = {key: Product.objects.create(product_key=key, name=key, product_type=kind,
                                            is_currency=key in ("COIN", "GOLD"))
                for key, kind in KINDS.items()}
    # A row from before the currency rule: an entitlement marked as a currency.
    Product.objects.filter(product_key="GOLD").update(product_type="period")
    for sku, (price, currency, items) in OFFERS.items():
        offer = Offer.objects.create(sku=sku, name=sku, price=price, currency=currency)
        for key, quantity, days in items:
            OfferItem.objects.create(offer=offer, product=products[key], quantity=quantity,
                                     period_unit="days" if days else "forever",
                                     period_value=days)


class WalletMachine(RuleBasedStateMachine):
    """Three accounts driven by random operations, checked against the reference model."""

    def __init__(self) -> None:
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        build_catalog()
        model = get_user_model()
        self.users = [model.objects.create(username=f"prop{i}").pk for i in range(USERS)]
        self.model = Model({pk: Wallet() for pk in self.users})

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    def _wallet(self, user: Any) -> Wallet:
        return self.model.wallets[user]

    # -- buying ----------------------------------------------------------------------------

    @initialize(index=st.integers(0, USERS - 1), months=st.integers(2, 3))
    def start(self, index: int, months: int) -> None:
        """Coins for everyone, and one account with back-to-back monthly orders to refund."""
        for user in self.users:
            T.grant_offer(user, "PACK_COIN")
            self._granted(user, "PACK_COIN", 1, None)
        for _ in range(months):
            self.buy_period(index, 1)

    @rule(index=st.integers(0, USERS - 1), count=st.integers(1, 2))
    def buy_period(self, index: int, count: int) -> None:
        self.grant(index, "MONTH", True, count)

    @rule(index=st.integers(0, USERS - 1), sku=st.sampled_from(BOUGHT),
          as_order=st.booleans(), count=st.integers(1, 3))
    def grant(self, index: int, sku: str, as_order: bool, count: int) -> None:
        user, order = self.users[index], None
        if as_order:
            order = OrderService.create_order(user, [{"sku": sku, "quantity": count}]).pk
            OrderService.pay_order(order, payment_id=f"pay-{order}")
            self.model.orders[order] = user
        else:
            T.grant_offer(user, sku)
            count = 1
        self._granted(user, sku, count, order)

    def _granted(self, user: Any, sku: str, count: int, order: int | None) -> None:
        now = timezone.now()
        for key, quantity, days in OFFERS[sku][2]:
            if key == PERIOD:
                self.model.grant_period(user, (days or 0) * count, now, order)
            elif key == UNLIMITED:
                self._wallet(user).unlimited.append(order)
            else:
                self._wallet(user).counters[key] += quantity * count

    @rule(index=st.integers(0, USERS - 1), sku=st.sampled_from(SWAPS))
    def exchange(self, index: int, sku: str) -> None:
        user, price = self.users[index], int(OFFERS[sku][0])
        result = T.exchange(user, offer_id=sku)
        assert result["success"] is (self._wallet(user).counters["COIN"] >= price), result
        if result["success"]:
            self._wallet(user).counters["COIN"] -= price
            self._granted(user, sku, 1, None)

    @rule(index=st.integers(0, USERS - 1), sku=st.sampled_from(["SWAP_GOLD", "SWAP_EMPTY"]))
    def refused_exchange(self, index: int, sku: str) -> None:
        rows = Transaction.objects.count()
        with pytest.raises(BillableError) as caught:
            T.exchange(self.users[index], offer_id=sku)
        assert caught.value.code in ("currency_invalid", "offer_has_no_items")
        assert Transaction.objects.count() == rows

    @rule(index=st.integers(0, USERS - 1))
    def claim_trial(self, index: int) -> None:
        user = self.users[index]
        if user in self.model.trial_used:
            with pytest.raises(TrialAlreadyUsed):
                TrialService.claim_trial(user, "TRIAL")
            return
        TrialService.claim_trial(user, "TRIAL")
        self.model.trial_used.add(user)
        self._granted(user, "TRIAL", 1, None)

    # -- spending --------------------------------------------------------------------------

    @rule(index=st.integers(0, USERS - 1), key=st.sampled_from(COUNTERS),
          amount=st.integers(1, 8), idem=st.one_of(st.none(), st.sampled_from(["k1", "k2"])))
    def consume(self, index: int, key: str, amount: int, idem: str | None) -> None:
        user = self.users[index]
        wallet = self._wallet(user)
        result = T.consume_quota(user, key.lower(), amount=amount, idempotency_key=idem)
        if idem in wallet.keys:
            if wallet.keys[idem] == (key, amount):
                assert result["success"] and "idempotent" in result["message"]
            else:
                assert result["error"] == "idempotency_conflict"
            return
        enough = wallet.counters[key] >= amount
        assert result["success"] is enough, result
        if enough:
            wallet.counters[key] -= amount
            if idem:
                wallet.keys[idem] = (key, amount)

    @rule(index=st.integers(0, USERS - 1), key=st.sampled_from([PERIOD, UNLIMITED]))
    def use_entitlement(self, index: int, key: str) -> None:
        user = self.users[index]
        assert T.consume_quota(user, key)["success"] is self._has_access(user, key)

    @rule(index=st.integers(0, USERS - 1), key=st.sampled_from(COUNTERS),
          amount=st.integers(1, 6))
    def reserve(self, index: int, key: str, amount: int) -> None:
        user = self.users[index]
        try:
            rid = T.reserve_quota(user, key, amount)
        except (QuotaExhausted, InsufficientFunds):
            assert self._wallet(user).counters[key] < amount
            return
        self._wallet(user).counters[key] -= amount
        self.model.holds[rid] = (user, key, amount)

    @rule(data=st.data(), settle=st.sampled_from(["commit", "release", "time_out"]))
    def settle_hold(self, data: st.DataObject, settle: str) -> None:
        if not self.model.holds:
            return
        rid = data.draw(st.sampled_from(sorted(self.model.holds)))
        user, key, amount = self.model.holds.pop(rid)
        back = amount
        if settle == "commit":
            part = data.draw(st.integers(1, amount))
            T.commit_reservation(rid, part)
            back = amount - part
        elif settle == "release":
            assert T.release_reservation(rid) is True
        else:
            Reservation.objects.filter(pk=rid).update(expires_at=timezone.now() - timedelta(1))
            T.expire_batches()
        self._wallet(user).counters[key] += back

    # -- accounts, expiry, refunds ---------------------------------------------------------

    @rule(into=st.integers(0, USERS - 1), source=st.integers(0, USERS - 1))
    def merge(self, into: int, source: int) -> None:
        if into == source:
            return
        CustomerService.merge_customers(self.users[into], self.users[source])
        self.model.merge(self.users[into], self.users[source])

    @rule(data=st.data())
    def expire_one(self, data: st.DataObject) -> None:
        held = ReservationItem.objects.filter(reservation__state="HELD").values("quota_batch")
        candidates = list(QuotaBatch.objects.spendable().filter(
            product__product_key__in=COUNTERS).exclude(pk__in=held).order_by("id"))
        if not candidates:
            return
        batch = data.draw(st.sampled_from(candidates))
        QuotaBatch.objects.filter(pk=batch.pk).update(expires_at=timezone.now())
        self._wallet(batch.user_id).counters[batch.product.product_key] -= \
            batch.remaining_quantity
        assert T.expire_batches() == 1

    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        held = ReservationItem.objects.filter(reservation__state="HELD").values("quota_batch")
        free = [pk for pk in sorted(self.model.orders) if not QuotaBatch.objects.filter(
            order_item__order_id=pk, pk__in=held).exists()]
        if not free:
            return
        order = data.draw(st.sampled_from(free))
        owner = self.model.orders.pop(order)
        for batch in QuotaBatch.objects.spendable().filter(
                order_item__order_id=order, product__product_key__in=COUNTERS):
            self._wallet(owner).counters[batch.product.product_key] -= batch.remaining_quantity
        OrderService.refund_paid_order(order)
        self.model.refund_periods(owner, order, timezone.now())

    # -- checks ----------------------------------------------------------------------------

    def _has_access(self, user: Any, key: str) -> bool:
        wallet = self._wallet(user)
        if key == UNLIMITED:
            return bool(wallet.unlimited)
        return wallet.access_end(timezone.now()) is not None

    @invariant()
    def ledger_matches_the_model(self) -> None:
        assert T.check_ledger() == []
        assert not QuotaBatch.objects.filter(remaining_quantity__lt=0).exists()
        now = timezone.now()
        for user in self.users:
            wallet = self._wallet(user)
            for key in COUNTERS:
                assert T.get_balance(user, key) == wallet.counters[key] >= 0, (user, key)
            for key in (PERIOD, UNLIMITED):
                assert T.check_quota(user, key)["can_use"] is self._has_access(user, key)
            real = Wallet(periods=[Interval(b.valid_from, b.expires_at) for b in
                                   QuotaBatch.objects.filter(user_id=user, state="ACTIVE",
                                                             product__product_key=PERIOD)
                                   if b.expires_at is not None])
            expected, actual = wallet.access_end(now), real.access_end(now)
            assert (expected is None) is (actual is None), (expected, actual)
            if expected is not None and actual is not None:
                assert abs(expected - actual) < TOLERANCE, (expected, actual)
            eligible = TrialService.is_eligible({}, user_id=user)
            assert eligible is (user not in self.model.trial_used)


def test_random_operation_sequences_keep_the_ledger_invariant() -> None:
    run_state_machine_as_test(WalletMachine, settings=settings(
        max_examples=12, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
