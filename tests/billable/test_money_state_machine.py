"""Model-based test across features: no sequence of public operations mints or loses value.

``tests/billable/test_ledger_properties.py`` drives the ledger core (grants, consumption, holds,
exchange, trials, merges, refunds of chained periods). This machine crosses the features built
on top of it, written from the public contract (SPEC §3–5 and §9, docs/ledger.md,
docs/orders.md, docs/growth.md): multi-item orders paid with payment ids (fresh, replayed,
conflicting, reused), cancelled and refunded (partly consumed, partly held); consumption,
grants, exchanges and holds under idempotency keys (replays and conflicting replays); holds
committed, partly committed, released and timed out; a controllable clock (expiring batches,
periods queued to start in the future, expiring holds, gifts and promo reservations); trials
claimed with and without presented identities; grant and discount promo codes; gifts bought,
paid, claimed, refunded and expired; referral bonuses granted once under a key; customer merges
at any point (identity conflicts refused).

The reference model knows, per account and product, the spendable units, the access windows,
the keys, trials and promo uses. What the model cannot know without re-implementing the
engine — which batch a consumption took its units from — is read from the database only at
the moments a documented rule depends on it (a refund revokes *what is left* of the order's
batches; an expiry removes *what is left* of the batch), and each such reading is checked
against what the model granted.

After every step: balances and access equal the model; ``check_ledger()`` is clean and the
invariant recomputed here from the tables holds; no batch is negative; every paid order's lines
are granted exactly once (a gift's: once claimed); a refund never revokes more than the order
granted; the ledger's credits equal what the model granted and its usage debits what the model
spent; a refused operation wrote nothing.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import F, Q, Sum
from django.test import TestCase
from django.utils import timezone
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from billable.exceptions import (
    GiftAlreadyClaimed,
    GiftExpired,
    GiftOwn,
    IdempotencyConflict,
    IdentityConflict,
    InsufficientFunds,
    OrderStateError,
    PaymentConflict,
    PromoAlreadyUsed,
    PromoExhausted,
    QuotaExhausted,
    ReferralError,
    ReservationStateError,
    TrialAlreadyUsed,
)
from billable.growth.gifts import GiftService
from billable.growth.promo import PromoService
from billable.models import (
    ExternalIdentity,
    Gift,
    IdempotencyKey,
    Offer,
    OfferItem,
    Order,
    OrderItem,
    Product,
    PromoCode,
    PromoIdentityUse,
    PromoRedemption,
    QuotaBatch,
    Referral,
    Reservation,
    ReservationItem,
    Transaction,
    TrialHistory,
)
from billable.services import CustomerService, OrderService
from billable.services import TransactionService as T
from billable.services.referrals import ReferralService
from billable.services.trials import TrialService
from tests.billable.ledger_model import Interval, Wallet, chain_after

pytestmark = pytest.mark.django_db

COUNTERS = ("A", "COIN", "X")
PERIOD, UNLIMITED = "P", "U"
KINDS = {"A": "quantity", "COIN": "quantity", "X": "quantity", "P": "period",
         "U": "unlimited"}
#: sku → (price, currency, [(product, quantity, (unit, value) or None)])
OFFERS: dict[str, tuple[str, str, list[tuple[str, int, tuple[str, int] | None]]]] = {
    "PACK_A": ("10", "USD", [("A", 5, None)]),
    "MULTI": ("3", "USD", [("A", 2, None), ("X", 3, ("days", 7)), ("P", 1, ("days", 7))]),
    "PACK_COIN": ("1", "USD", [("COIN", 10, None)]),
    "DAY_X": ("1", "USD", [("X", 4, ("days", 1))]),
    "MONTH": ("5", "USD", [("P", 1, ("days", 30))]),
    "LIFE": ("9", "USD", [("U", 1, None)]),
    "SWAP_A": ("4", "COIN", [("A", 3, None)]),
    "SWAP_X": ("2", "COIN", [("X", 2, ("hours", 6))]),
    "TRIAL": ("0", "USD", [("A", 2, None)]),
    "PROMO_GIFT": ("0", "USD", [("A", 1, None)]),
    "REF_BONUS": ("0", "USD", [("COIN", 3, None)]),
}
BUYABLE = ["PACK_A", "MULTI", "PACK_COIN", "DAY_X", "MONTH", "LIFE"]
GRANTABLE = ["PACK_A", "MULTI", "DAY_X", "MONTH"]
SWAPS = ["SWAP_A", "SWAP_X"]
GIFTABLE = ["MULTI", "PACK_A"]
USERS = 3
#: external identities per account: two Telegram accounts (merging them is a conflict).
IDENTITIES: list[dict[str, str]] = [{"telegram": "100"}, {"telegram": "101"}, {"email": "c@x"}]
PROMO_MAX_USES = 3
HOLD_TTL = timedelta(seconds=900)
GIFT_TTL = timedelta(days=30)
PROMO_TTL = timedelta(seconds=3600)
TOLERANCE = timedelta(seconds=30)
STEPS = [timedelta(minutes=10), timedelta(minutes=20), timedelta(hours=2),
         timedelta(hours=25), timedelta(days=8), timedelta(days=31)]

TABLES = (Transaction, QuotaBatch, Order, OrderItem, Reservation, ReservationItem,
          IdempotencyKey, PromoRedemption, PromoIdentityUse, Gift, TrialHistory, Referral)


# -- the clock ------------------------------------------------------------------------------


class Clock:
    """``timezone.now`` moved forward by ``offset`` (real time keeps ticking underneath, so
    two operations never share a timestamp and FIFO order stays the order of the calls)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self.real = timezone.now

    def now(self) -> datetime:
        return self.real() + self.offset

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Patch ``django.utils.timezone.now`` and every model field default bound to it."""
        defaults = [f for model in apps.get_app_config("billable").get_models()
                    for f in model._meta.get_fields()
                    if getattr(f, "default", None) is self.real]
        with mock.patch.object(timezone, "now", self.now):
            for f in defaults:
                f.default = self.now
            try:
                yield
            finally:
                for f in defaults:
                    f.default = self.real


# -- the model ------------------------------------------------------------------------------


@dataclass
class Account:
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    wallet: Wallet = field(default_factory=Wallet)  # periods and unlimited grants
    keys: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    identities: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelOrder:
    owner: int
    lines: list[tuple[str, int]]
    status: str = "pending"
    payment: str | None = None
    gift: bool = False
    claimer: int | None = None  # gifts: who got the grant
    promo: int | None = None  # discount redemption pk


@dataclass
class Hold:
    owner: int
    product: str
    amount: int
    expires_at: datetime
    key: str | None
    items: dict[Any, int]  # batch id → units (witness read once at placement)


@dataclass
class Model:
    accounts: dict[int, Account]
    orders: dict[int, ModelOrder] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    settled: dict[str, str] = field(default_factory=dict)  # hold id → COMMITTED/RELEASED…
    trial_tokens: set[tuple[str, str]] = field(default_factory=set)
    promo_tokens: set[tuple[str, str]] = field(default_factory=set)
    promo_uses: int = 0
    discount_tokens: dict[int, set[tuple[str, str]]] = field(default_factory=dict)
    gifts: dict[str, int] = field(default_factory=dict)  # token → order pk
    granted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    spent: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    bonuses: set[int] = field(default_factory=set)  # referral ids whose bonus was granted
    payments: set[str] = field(default_factory=set)
    merged_away: set[int] = field(default_factory=set)  # accounts merged into another
    merged_into: dict[int, int] = field(default_factory=dict)  # source → its merge's target


def own_tokens(account_pk: int, account: Account) -> list[tuple[str, str]]:
    return [(p, v) for p, v in account.identities.items()]


# -- helpers --------------------------------------------------------------------------------


def build_catalog() -> None:
    products = {key: Product.objects.create(product_key=key, name=key, product_type=kind,
                                            is_currency=key == "COIN")
                for key, kind in KINDS.items()}
    for sku, (price, currency, items) in OFFERS.items():
        offer = Offer.objects.create(sku=sku, name=sku, price=Decimal(price), currency=currency)
        for key, quantity, period in items:
            OfferItem.objects.create(offer=offer, product=products[key], quantity=quantity,
                                     period_unit=period[0] if period else "forever",
                                     period_value=period[1] if period else None)
    PromoCode.objects.create(code="FREE1", offer=Offer.objects.get(sku="PROMO_GIFT"),
                             max_uses=PROMO_MAX_USES)
    PromoCode.objects.create(code="HALF", kind="percent", percent_off=50,
                             offer=Offer.objects.get(sku="PACK_A"))


def table_counts() -> tuple[int, ...]:
    """Row counts of every table a money operation writes (one statement)."""
    sql = "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {model._meta.db_table})"
                                for model in TABLES)
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return tuple(cursor.fetchone())


def spendable_remaining(batches: Any, now: datetime) -> int:
    return sum(b.remaining_quantity for b in batches if b.is_spendable(now))


#: Batches breaking ``Σ CREDIT == initial`` or ``initial − Σ DEBIT − Σ held == remaining``, or
#: negative: written from SPEC §3 / docs/ledger.md, not taken from ``check_ledger``.
INVARIANT_SQL = """
SELECT b.id FROM billable_quota_batches b
LEFT JOIN (SELECT quota_batch_id,
                  SUM(CASE WHEN direction = 'CREDIT' THEN amount ELSE 0 END) AS credits,
                  SUM(CASE WHEN direction = 'DEBIT' THEN amount ELSE 0 END) AS debits
           FROM billable_transactions GROUP BY quota_batch_id) t ON t.quota_batch_id = b.id
LEFT JOIN (SELECT i.quota_batch_id, SUM(i.amount) AS held
           FROM billable_reservation_items i
           JOIN billable_reservations r ON r.id = i.reservation_id AND r.state = 'HELD'
           GROUP BY i.quota_batch_id) h ON h.quota_batch_id = b.id
WHERE COALESCE(t.credits, 0) <> b.initial_quantity
   OR b.initial_quantity - COALESCE(t.debits, 0) - COALESCE(h.held, 0) <> b.remaining_quantity
   OR b.remaining_quantity < 0
"""


class MoneyMachine(RuleBasedStateMachine):
    """Three accounts, every money feature, one clock; checked against the model."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.patch = self.clock.installed()
        self.patch.__enter__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        build_catalog()
        users = get_user_model().objects
        self.users = [users.create(username=f"money{i}").pk for i in range(USERS)]
        self.model = Model({pk: Account() for pk in self.users})
        for pk, identities in zip(self.users, IDENTITIES, strict=True):
            for provider, value in identities.items():
                ExternalIdentity.objects.create(user_id=pk, provider=provider,
                                                external_id=value)
                self.model.accounts[pk].identities[provider] = value
        self.payment_ids = itertools.count(1)

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)
        self.patch.__exit__(None, None, None)

    # -- plumbing ----------------------------------------------------------------------------

    def acc(self, pk: int) -> Account:
        return self.model.accounts[pk]

    def paid_to(self, order: ModelOrder) -> int:
        """The account a payment of ``order`` credits: an order of a merged-away account (created
        after its merge, under the stale id) moves to the end of its merge chain when paid."""
        owner, seen = order.owner, {order.owner}
        while owner in self.model.merged_into and self.model.merged_into[owner] not in seen:
            owner = self.model.merged_into[owner]
            seen.add(owner)
        order.owner = owner
        return owner

    def run(self, call: Callable[[], Any]) -> Any:
        """Run a service call as a request would: on-commit work (signal receivers) runs."""
        with TestCase.captureOnCommitCallbacks(execute=True):
            return call()

    def refused(self, call: Callable[[], Any], *errors: type[BaseException]) -> BaseException:
        """The call raises one of ``errors`` and writes nothing at all."""
        before = table_counts()
        with pytest.raises(errors) as caught:
            self.run(call)
        assert table_counts() == before, (caught.value, before, table_counts())
        event(f"refused {type(caught.value).__name__}")
        return caught.value

    def granted(self, owner: int, sku: str, count: int, order: int | None) -> None:
        """What the contract says a grant of ``count`` × ``sku`` gives ``owner``."""
        now = timezone.now()
        account = self.acc(owner)
        for key, quantity, period in OFFERS[sku][2]:
            if key == PERIOD:
                assert period is not None
                start = account.wallet.chain_end(now)
                days = period[1] * count
                account.wallet.periods.append(Interval(start, start + timedelta(days=days),
                                                       order))
            elif key == UNLIMITED:
                account.wallet.unlimited.append(order)
            else:
                account.counters[key] += quantity * count
                self.model.granted[key] += quantity * count

    def key_request(self, owner: int, key: str | None, request: tuple[Any, ...]) -> str:
        """``new``, ``replay`` or ``conflict`` for ``key`` under ``owner``."""
        if key is None or key not in self.acc(owner).keys:
            return "new"
        return "replay" if self.acc(owner).keys[key] == request else "conflict"

    def pick(self, data: st.DataObject, status: str) -> int | None:
        """An order, mostly one in ``status`` (the others test the refusals)."""
        fitting = sorted(pk for pk, o in self.model.orders.items() if o.status == status)
        every = sorted(self.model.orders)
        if not every:
            return None
        odd = data.draw(st.integers(0, 4)) == 0
        return data.draw(st.sampled_from(every if odd or not fitting else fitting))

    # -- buying ------------------------------------------------------------------------------

    @initialize()
    def stock(self) -> None:
        """Everyone starts with a paid order of counters and coins, and a multi-item grant."""
        for index in range(USERS):
            self.buy(index, [("PACK_A", 1), ("PACK_COIN", 1)])
            self.grant(index, "MULTI", None)

    @rule(index=st.integers(0, USERS - 1),
          lines=st.lists(st.tuples(st.sampled_from(BUYABLE), st.integers(1, 2)), min_size=1,
                         max_size=2, unique_by=lambda line: line[0]))
    def buy(self, index: int, lines: list[tuple[str, int]]) -> None:
        """Create and pay an order in one go (the common path)."""
        self.create_order(index, lines)
        pk = max(self.model.orders)
        payment = f"pay-{next(self.payment_ids)}"
        self.run(lambda: OrderService.pay_order(pk, payment_id=payment, payment_method="stars"))
        order = self.model.orders[pk]
        order.status, order.payment = "paid", payment
        self.model.payments.add(payment)
        owner = self.paid_to(order)
        for sku, count in lines:
            self.granted(owner, sku, count, pk)

    @rule(index=st.integers(0, USERS - 1),
          lines=st.lists(st.tuples(st.sampled_from(BUYABLE), st.integers(1, 2)), min_size=1,
                         max_size=2, unique_by=lambda line: line[0]))
    def create_order(self, index: int, lines: list[tuple[str, int]],
                     key: str | None = None) -> None:
        owner = self.users[index]
        request = ("order", tuple(lines))
        state = self.key_request(owner, key, request)

        def call() -> Any:
            return OrderService.create_order(
                owner, [{"sku": sku.lower(), "quantity": n} for sku, n in lines],
                idempotency_key=key)

        if state == "conflict":
            self.refused(call, IdempotencyConflict)
            return
        before = table_counts()
        order = self.run(call)
        if state == "replay":  # the first order, whatever its status now (docs/api.md)
            assert order.pk in self.model.orders and table_counts() == before
            return
        total = sum(Decimal(OFFERS[sku][0]) * n for sku, n in lines)
        assert order.status == "pending" and order.total_amount == total
        self.model.orders[order.pk] = ModelOrder(owner, lines)
        if key is not None:
            self.acc(owner).keys[key] = request

    @rule(index=st.integers(0, USERS - 1),
          lines=st.lists(st.tuples(st.sampled_from(BUYABLE), st.integers(1, 2)), min_size=1,
                         max_size=2, unique_by=lambda line: line[0]),
          key=st.sampled_from(["o1", "k1"]))
    def create_keyed_order(self, index: int, lines: list[tuple[str, int]], key: str) -> None:
        self.create_order(index, lines, key)

    @rule(index=st.integers(0, USERS - 1), product=st.sampled_from([PERIOD, UNLIMITED]))
    def use_entitlement(self, index: int, product: str) -> None:
        """Entitlements are used, never depleted: success exactly while access runs."""
        owner = self.users[index]
        account = self.acc(owner)
        access = (bool(account.wallet.unlimited) if product == UNLIMITED
                  else account.wallet.access_end(timezone.now()) is not None)
        assert self.run(lambda: T.consume_quota(owner, product))["success"] is access

    @rule(data=st.data(), how=st.sampled_from(["fresh", "fresh", "replay", "other_id",
                                               "reused_id"]))
    def pay(self, data: st.DataObject, how: str) -> None:
        pk = self.pick(data, "pending" if how.startswith("fresh") else "paid")
        if pk is None:
            return
        order = self.model.orders[pk]
        payment = f"pay-{next(self.payment_ids)}"
        if how == "replay" and order.payment:
            payment = order.payment
        elif how == "reused_id" and self.model.payments:
            payment = data.draw(st.sampled_from(sorted(self.model.payments)))
        pay = GiftService.pay_gift_order if order.gift else OrderService.pay_order

        def call() -> Any:
            return pay(pk, payment_id=payment, payment_method="stars")

        if order.status in ("cancelled", "refunded"):
            self.refused(call, OrderStateError)
            return
        if order.status == "paid":
            if payment == order.payment:
                before = table_counts()
                assert self.run(call).status == "paid"
                assert table_counts() == before
            else:
                self.refused(call, PaymentConflict)
            return
        if payment in self.model.payments:
            self.refused(call, PaymentConflict)
            return
        self.run(call)
        event("paid gift order" if order.gift else "paid order")
        order.status, order.payment = "paid", payment
        self.model.payments.add(payment)
        if not order.gift:
            owner = self.paid_to(order)
            for sku, count in order.lines:
                self.granted(owner, sku, count, pk)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        pk = self.pick(data, "pending")
        if pk is None:
            return
        order = self.model.orders[pk]
        if order.status in ("paid", "refunded"):
            self.refused(lambda: OrderService.cancel_pending_order(pk), OrderStateError)
            return
        self.run(lambda: OrderService.cancel_pending_order(pk))
        order.status = "cancelled"

    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        pk = self.pick(data, "paid")
        if pk is None:
            return
        order = self.model.orders[pk]
        if order.status != "paid":
            self.refused(lambda: OrderService.refund_paid_order(pk), OrderStateError)
            return
        now = timezone.now()
        batches = list(QuotaBatch.objects.filter(order_item__order_id=pk)
                       .select_related("product"))
        owners = {b.user_id for b in batches}
        expected_owner = order.claimer if order.gift else order.owner
        assert owners <= {expected_owner}, (owners, expected_owner)
        left = {b.pk: b.remaining_quantity for b in batches if b.state in ("ACTIVE",
                                                                            "EXHAUSTED")}
        for batch in batches:
            if batch.product.product_key in COUNTERS and batch.is_spendable(now):
                self.acc(batch.user_id).counters[batch.product.product_key] -= \
                    batch.remaining_quantity
        self.run(lambda: OrderService.refund_paid_order(pk))
        event("refund: " + ("claimed gift" if order.claimer else "gift" if order.gift
                            else "order") + (" partly used" if any(
            b.remaining_quantity < b.initial_quantity for b in batches) else ""))
        order.status = "refunded"
        debits = dict(Transaction.objects.filter(
            quota_batch_id__in=list(left), direction="DEBIT", action_type="refund")
            .values_list("quota_batch_id", "amount"))
        for batch_pk, amount in debits.items():
            assert amount == left[batch_pk], (batch_pk, amount, left)
        if expected_owner is not None:
            self.acc(expected_owner).wallet = self._refunded(expected_owner, pk, now)

    def _refunded(self, owner: int, order: int, now: datetime) -> Wallet:
        wallet = self.acc(owner).wallet
        revoked_running = any(i.order == order and i.end > now for i in wallet.periods)
        wallet.periods = [i for i in wallet.periods if i.order != order]
        if revoked_running:  # docs/orders.md: queued periods move forward over the gap
            cursor = now
            for interval in sorted(wallet.periods, key=lambda i: i.start):
                if interval.end <= now:
                    continue
                if interval.start > cursor:
                    shift = interval.start - cursor
                    interval.start -= shift
                    interval.end -= shift
                cursor = max(cursor, interval.end)
        wallet.unlimited = [o for o in wallet.unlimited if o != order]
        return wallet

    @rule(index=st.integers(0, USERS - 1), sku=st.sampled_from(GRANTABLE),
          key=st.one_of(st.none(), st.sampled_from(["g1", "k1"])))
    def grant(self, index: int, sku: str, key: str | None) -> None:
        owner = self.users[index]
        state = self.key_request(owner, key, ("grant", sku))
        if state == "conflict":
            self.refused(lambda: T.grant_offer(owner, sku, idempotency_key=key),
                         IdempotencyConflict)
            return
        before = table_counts()
        batches = self.run(lambda: T.grant_offer(owner, sku, idempotency_key=key))
        assert len(batches) == len(OFFERS[sku][2])
        if state == "replay":
            assert table_counts() == before
            return
        self.granted(owner, sku, 1, None)
        if key is not None:
            self.acc(owner).keys[key] = ("grant", sku)

    # -- spending ----------------------------------------------------------------------------

    @rule(index=st.integers(0, USERS - 1), product=st.sampled_from(COUNTERS),
          amount=st.integers(1, 6), key=st.one_of(st.none(), st.sampled_from(["c1", "k1"])))
    def consume(self, index: int, product: str, amount: int, key: str | None) -> None:
        owner = self.users[index]
        account = self.acc(owner)
        state = self.key_request(owner, key, ("consume", product, amount))
        before = table_counts()
        result = self.run(lambda: T.consume_quota(owner, product.lower(), amount=amount,
                                                  idempotency_key=key))
        if state == "replay":
            assert result["success"] and "idempotent" in result["message"], result
            assert table_counts() == before
            return
        if state == "conflict":
            assert result["error"] == "idempotency_conflict", result
            assert table_counts() == before
            return
        if account.counters[product] >= amount:
            assert result["success"], (result, account.counters)
            assert result["remaining"] == account.counters[product] - amount
            account.counters[product] -= amount
            self.model.spent[product] += amount
            if key is not None:
                account.keys[key] = ("consume", product, amount)
        else:
            assert not result["success"], (result, account.counters)
            assert result["error"] == ("quota_exhausted" if account.counters[product] == 0
                                       else "insufficient_funds"), result
            assert table_counts() == before

    @rule(index=st.integers(0, USERS - 1), sku=st.sampled_from(SWAPS),
          key=st.one_of(st.none(), st.sampled_from(["x1", "k1"])))
    def exchange(self, index: int, sku: str, key: str | None) -> None:
        owner = self.users[index]
        account = self.acc(owner)
        price = int(OFFERS[sku][0])
        state = self.key_request(owner, key, ("exchange", sku))
        if state == "conflict":
            self.refused(lambda: T.exchange(owner, offer_id=sku, idempotency_key=key),
                         IdempotencyConflict)
            return
        before = table_counts()
        result = self.run(lambda: T.exchange(owner, offer_id=sku, idempotency_key=key))
        if state == "replay":
            assert result["success"], result
            assert table_counts() == before
            return
        if account.counters["COIN"] >= price:
            assert result["success"], result
            account.counters["COIN"] -= price
            self.model.spent["COIN"] += price
            self.granted(owner, sku, 1, None)
            if key is not None:
                account.keys[key] = ("exchange", sku)
        else:
            assert not result["success"], result
            assert table_counts() == before

    @rule(index=st.integers(0, USERS - 1), product=st.sampled_from(COUNTERS),
          amount=st.integers(1, 5), key=st.one_of(st.none(), st.sampled_from(["h1", "k1"])))
    def reserve(self, index: int, product: str, amount: int, key: str | None) -> None:
        owner = self.users[index]
        account = self.acc(owner)
        state = self.key_request(owner, key, ("reserve", product, amount))

        def call() -> Any:
            return T.reserve_quota(owner, product, amount, idempotency_key=key)

        if state == "conflict":
            self.refused(call, IdempotencyConflict)
            return
        if state == "replay":
            before = table_counts()
            rid = self.run(call)
            assert rid in self.model.holds or rid in self.model.settled
            assert table_counts() == before
            return
        if account.counters[product] < amount:
            self.refused(call, QuotaExhausted, InsufficientFunds)
            return
        rid = self.run(call)
        account.counters[product] -= amount
        items = dict(ReservationItem.objects.filter(reservation_id=rid)
                     .values_list("quota_batch_id", "amount"))
        assert sum(items.values()) == amount
        self.model.holds[rid] = Hold(owner, product, amount, timezone.now() + HOLD_TTL, key,
                                     items)
        if key is not None:
            account.keys[key] = ("reserve", product, amount)

    def _give_back(self, hold: Hold, units: dict[Any, int]) -> None:
        """Units returned to batches: spendable ones come back, the others are written off."""
        now = timezone.now()
        batches = QuotaBatch.objects.in_bulk(list(units))
        back = sum(n for pk, n in units.items() if batches[pk].state == "ACTIVE"
                   and batches[pk].valid_from <= now
                   and (batches[pk].expires_at is None or batches[pk].expires_at > now))
        owner = QuotaBatch.objects.filter(pk__in=list(units)).values_list(
            "user_id", flat=True).first()
        assert owner == hold.owner, (owner, hold.owner)
        self.acc(hold.owner).counters[hold.product] += back

    @rule(data=st.data(), how=st.sampled_from(["commit", "part", "release", "replay"]))
    def settle(self, data: st.DataObject, how: str) -> None:
        if not self.model.holds and not self.model.settled:
            return
        rid = data.draw(st.sampled_from(sorted(self.model.holds) + sorted(self.model.settled)))
        if rid in self.model.settled:
            state = self.model.settled[rid]
            if state == "COMMITTED":
                before = table_counts()
                answer = self.run(lambda: T.commit_reservation(rid))
                assert "idempotent" in answer["message"]
                assert table_counts() == before
                assert self.run(lambda: T.release_reservation(rid)) is False
            else:
                self.refused(lambda: T.commit_reservation(rid), ReservationStateError)
                assert self.run(lambda: T.release_reservation(rid)) is True
            return
        hold = self.model.holds[rid]
        now = timezone.now()
        if how == "release":
            assert self.run(lambda: T.release_reservation(rid)) is True
            self.model.holds.pop(rid)
            self._give_back(hold, hold.items)
            self.model.settled[rid] = "RELEASED"
            return
        if now >= hold.expires_at:  # past its expiry: released, and the commit refused
            with pytest.raises(ReservationStateError):
                self.run(lambda: T.commit_reservation(rid))
            self.model.holds.pop(rid)
            self._give_back(hold, hold.items)
            self.model.settled[rid] = "EXPIRED"
            return
        part = hold.amount
        if how == "part" and hold.amount > 1:
            part = data.draw(st.integers(1, hold.amount - 1))
        batches = QuotaBatch.objects.in_bulk(list(hold.items))
        live = all(b.is_spendable(now) or (b.state == "EXHAUSTED" and b.valid_from <= now and (
            b.expires_at is None or b.expires_at > now)) for b in batches.values())
        dead = not any(b.is_spendable(now) or b.state == "EXHAUSTED"
                       for b in batches.values())
        if part != hold.amount and not live and not dead:
            part = hold.amount  # which batch gets units back is the engine's choice
        event(f"commit {'part' if part < hold.amount else 'all'}{' dead' if dead else ''}")
        answer = self.run(lambda: T.commit_reservation(rid, part))
        assert answer["success"] and answer["amount"] == part, answer
        self.model.holds.pop(rid)
        self.model.settled[rid] = "COMMITTED"
        self.model.spent[hold.product] += part
        if live:  # units given back to revoked or expired batches are written off
            self.acc(hold.owner).counters[hold.product] += hold.amount - part

    # -- time --------------------------------------------------------------------------------

    @rule(step=st.sampled_from(STEPS), job=st.booleans())
    def advance(self, step: timedelta, job: bool) -> None:
        """Time passes: what expires leaves the balance whether or not a job runs."""
        old = timezone.now()
        new = old + step
        ending = QuotaBatch.objects.filter(
            state="ACTIVE", expires_at__gt=old, expires_at__lte=new + timedelta(seconds=5),
            product__product_key__in=COUNTERS).select_related("product")
        soon = [b for b in ending if b.valid_from <= new]
        self.clock.offset += step
        now = timezone.now()
        for batch in soon:
            if batch.expires_at <= now:
                self.acc(batch.user_id).counters[batch.product.product_key] -= \
                    batch.remaining_quantity
        if job:
            before = {u: [T.get_balance(u, k) for k in COUNTERS] for u in self.users}
            self.run(T.expire_batches)
            self.run(lambda: GiftService.expire_gifts())
            self._sweep_promos()
            for hold_id, hold in list(self.model.holds.items()):
                if now >= hold.expires_at:
                    self.model.holds.pop(hold_id)
                    self._give_back(hold, hold.items)
                    self.model.settled[hold_id] = "EXPIRED"
            for u in self.users:
                before[u] = [self.acc(u).counters[k] for k in COUNTERS]
                assert [T.get_balance(u, k) for k in COUNTERS] == before[u], u

    def _sweep_promos(self) -> None:
        now = timezone.now()
        stale = {pk for pk, o in self.model.orders.items() if o.promo is not None}
        self.run(lambda: PromoService.release_stale())
        for pk in stale:
            order = self.model.orders[pk]
            redemption = PromoRedemption.objects.get(pk=order.promo)
            if order.status == "pending" and redemption.created_at <= now - PROMO_TTL:
                order.status = "cancelled"
            if order.status == "cancelled":
                self.model.discount_tokens.pop(order.promo, None)

    # -- growth ------------------------------------------------------------------------------

    def _trial_tokens(self, owner: int, presented: str | None) -> set[tuple[str, str]]:
        if presented is not None:
            tokens = {("telegram", presented)}
        else:
            tokens = set(own_tokens(owner, self.acc(owner)))
        return tokens | {("user", str(owner))}

    @rule(index=st.integers(0, USERS - 1),
          presented=st.one_of(st.none(), st.sampled_from(["100", "101", "777"])))
    def claim_trial(self, index: int, presented: str | None) -> None:
        owner = self.users[index]
        tokens = self._trial_tokens(owner, presented)
        identities = None if presented is None else {"telegram": presented}
        if tokens & self.model.trial_tokens:
            self.refused(lambda: TrialService.claim_trial(owner, "TRIAL", identities=identities),
                         TrialAlreadyUsed)
            return
        self.run(lambda: TrialService.claim_trial(owner, "TRIAL", identities=identities))
        self.model.trial_tokens |= tokens
        self.granted(owner, "TRIAL", 1, None)

    def _promo_tokens(self, owner: int, presented: str | None) -> set[tuple[str, str]]:
        tokens = set(own_tokens(owner, self.acc(owner))) | {("user", str(owner))}
        if presented is not None:
            tokens.add(("telegram", presented))
        return tokens

    @rule(index=st.integers(0, USERS - 1),
          presented=st.one_of(st.none(), st.sampled_from(["100", "101", "777"])))
    def redeem_grant_code(self, index: int, presented: str | None) -> None:
        owner = self.users[index]
        tokens = self._promo_tokens(owner, presented)
        identities = None if presented is None else {"telegram": presented}

        def call() -> Any:
            return PromoService.redeem("free1", user_id=owner, identities=identities)

        if tokens & self.model.promo_tokens:
            self.refused(call, PromoAlreadyUsed)
            return
        if self.model.promo_uses >= PROMO_MAX_USES:
            self.refused(call, PromoExhausted)
            return
        self.run(call)
        self.model.promo_tokens |= tokens
        self.model.promo_uses += 1
        self.granted(owner, "PROMO_GIFT", 1, None)

    @rule(index=st.integers(0, USERS - 1))
    def redeem_discount_code(self, index: int) -> None:
        owner = self.users[index]
        tokens = self._promo_tokens(owner, None)
        taken = set().union(*self.model.discount_tokens.values())

        def call() -> Any:
            return PromoService.redeem("half", user_id=owner)

        if tokens & taken:
            self.refused(call, PromoAlreadyUsed)
            return
        result = self.run(call)
        order = result.order
        assert order.total_amount == Decimal("5.00")
        self.model.orders[order.pk] = ModelOrder(owner, [("PACK_A", 1)],
                                                 promo=result.redemption.pk)
        self.model.discount_tokens[result.redemption.pk] = tokens

    @rule(index=st.integers(0, USERS - 1), sku=st.sampled_from(GIFTABLE))
    def buy_gift(self, index: int, sku: str) -> None:
        owner = self.users[index]
        gift = self.run(lambda: GiftService.create_gift(owner, sku))
        self.model.orders[gift.order_id] = ModelOrder(owner, [(sku, 1)], gift=True)
        self.model.gifts[gift.token] = gift.order_id

    @rule(index=st.integers(0, USERS - 1), sku=st.sampled_from(GIFTABLE))
    def give_gift(self, index: int, sku: str) -> None:
        """Buy and pay a gift in one go (the common path); nothing reaches the buyer."""
        owner = self.users[index]
        before = {k: T.get_balance(owner, k) for k in COUNTERS}
        gift = self.run(lambda: GiftService.create_gift(owner, sku))
        payment = f"pay-{next(self.payment_ids)}"
        self.run(lambda: GiftService.pay_gift_order(gift.order_id, payment_id=payment,
                                                   payment_method="stars"))
        assert {k: T.get_balance(owner, k) for k in COUNTERS} == before
        self.model.orders[gift.order_id] = ModelOrder(owner, [(sku, 1)], gift=True,
                                                      status="paid", payment=payment)
        self.model.payments.add(payment)
        self.model.gifts[gift.token] = gift.order_id

    @rule(data=st.data(), index=st.integers(0, USERS - 1))
    def claim_gift(self, data: st.DataObject, index: int) -> None:
        if not self.model.gifts:
            return
        token = data.draw(st.sampled_from(sorted(self.model.gifts)))
        order = self.model.orders[self.model.gifts[token]]
        claimer = self.users[index]

        def call() -> Any:
            return GiftService.claim(token, user_id=claimer)

        paid_at = Order.objects.get(pk=self.model.gifts[token]).paid_at
        if order.claimer is not None:  # after merges the buyer may be the claimer's account
            self.refused(call, GiftOwn, GiftAlreadyClaimed, GiftExpired)
        elif order.owner == claimer:
            self.refused(call, GiftOwn)
        elif order.status != "paid" or timezone.now() >= paid_at + GIFT_TTL:
            self.refused(call, GiftExpired)
        else:
            self.run(call)
            event("gift claimed")
            order.claimer = claimer
            sku, count = order.lines[0]
            self.granted(claimer, sku, count, self.model.gifts[token])

    @rule(referrer=st.integers(0, USERS - 1), referee=st.integers(0, USERS - 1))
    def refer(self, referrer: int, referee: int) -> None:
        """A referral, and its bonus granted once under a key named by the referral."""
        a, b = self.users[referrer], self.users[referee]
        existing = Referral.objects.filter(referrer_id=a, referee_id=b).first()
        blocked = a == b or bool({a, b} & self.model.merged_away) or Referral.objects.filter(
            Q(referee_id=b) & ~Q(referrer_id=a) | Q(referrer_id=b, referee_id=a)).exists()
        if existing is None and blocked:
            self.refused(lambda: ReferralService.assign_referrer(a, b), ReferralError)
            return
        referral, created = self.run(lambda: ReferralService.assign_referrer(a, b))
        assert created is (existing is None)
        first = self.run(lambda: ReferralService.claim_bonus(referral.pk))
        assert first is (referral.pk not in self.model.bonuses)
        owner = Referral.objects.get(pk=referral.pk).referrer_id
        key = f"bonus-{referral.pk}"
        state = self.key_request(owner, key, ("grant", "REF_BONUS"))
        if first or state == "replay":  # the host grants on True, and may retry the grant
            before = table_counts()
            self.run(lambda: T.grant_offer(owner, "REF_BONUS", source="referral",
                                           idempotency_key=key))
            if state == "replay":
                assert table_counts() == before
            else:
                self.granted(owner, "REF_BONUS", 1, None)
                self.acc(owner).keys[key] = ("grant", "REF_BONUS")
            self.model.bonuses.add(referral.pk)

    # -- accounts ----------------------------------------------------------------------------

    @rule(into=st.integers(0, USERS - 1), source=st.integers(0, USERS - 1))
    def merge(self, into: int, source: int) -> None:
        target, src = self.users[into], self.users[source]
        if target == src:
            return
        a, b = self.acc(target), self.acc(src)
        if any(p in a.identities and a.identities[p] != v for p, v in b.identities.items()):
            self.refused(lambda: CustomerService.merge_customers(target, src),
                         IdentityConflict)
            return
        totals = {k: T.get_balance(target, k) + T.get_balance(src, k) for k in COUNTERS}
        self.run(lambda: CustomerService.merge_customers(target, src))
        event("merged" + (" with holds" if any(h.owner == src for h in self.model.holds.values())
                          else ""))
        assert {k: T.get_balance(target, k) for k in COUNTERS} == totals
        assert all(T.get_balance(src, k) == 0 for k in COUNTERS)
        for k in COUNTERS:
            a.counters[k] += b.counters[k]
        a.wallet.periods += chain_after(a.wallet, b.wallet.periods, timezone.now())
        a.wallet.unlimited += b.wallet.unlimited
        a.keys = {**b.keys, **a.keys}
        a.identities.update(b.identities)
        self.model.accounts[src] = Account(keys=dict(b.keys))  # a retry there replays
        self.model.merged_away.add(src)
        self.model.merged_into[src] = target
        involved = {("user", str(target)), ("user", str(src)), *own_tokens(target, a)}
        if involved & self.model.trial_tokens:
            self.model.trial_tokens |= involved
        if ("user", str(src)) in self.model.promo_tokens:
            self.model.promo_tokens.add(("user", str(target)))
        for tokens in self.model.discount_tokens.values():
            if ("user", str(src)) in tokens:
                tokens.add(("user", str(target)))
        for hold in self.model.holds.values():
            if hold.owner == src:
                hold.owner = target
        for order in self.model.orders.values():
            if order.owner == src:
                order.owner = target
            if order.claimer == src:
                order.claimer = target

    # -- checks ------------------------------------------------------------------------------

    @invariant()
    def balances_match_the_model(self) -> None:
        now = timezone.now()
        for user in self.users:
            account = self.acc(user)
            for key in COUNTERS:
                assert T.get_balance(user, key) == account.counters[key] >= 0, (
                    user, key, T.get_balance(user, key), account.counters[key])
            assert T.check_quota(user, UNLIMITED)["can_use"] is bool(account.wallet.unlimited)
            expected = account.wallet.access_end(now)
            assert T.check_quota(user, PERIOD)["can_use"] is (expected is not None), (
                user, expected)
            real = Wallet(periods=[Interval(b.valid_from, b.expires_at) for b in
                                   QuotaBatch.objects.filter(user_id=user, state="ACTIVE",
                                                             product__product_key=PERIOD)
                                   if b.expires_at is not None])
            actual = real.access_end(now)
            if expected is not None and actual is not None:
                assert abs(expected - actual) < TOLERANCE, (user, expected, actual)

    @invariant()
    def the_ledger_balances(self) -> None:
        assert T.check_ledger() == []
        # the same invariant computed here, in one statement, from the tables themselves
        with connection.cursor() as cursor:
            cursor.execute(INVARIANT_SQL)
            assert cursor.fetchall() == []
        assert not Transaction.objects.exclude(user_id=F("quota_batch__user_id")).exists()
        # what was granted and spent, counted by the model, is what the ledger says
        sums: dict[tuple[str, str], int] = {
            (key, direction): n for key, direction, n in Transaction.objects.filter(
                Q(direction="CREDIT") | Q(action_type__in=["usage", "exchange"])).values_list(
                "quota_batch__product__product_key", "direction").annotate(n=Sum("amount"))}
        for key in COUNTERS:
            assert (sums.get((key, "CREDIT"), 0), sums.get((key, "DEBIT"), 0)) == (
                self.model.granted[key], self.model.spent[key]), key

    @invariant()
    def orders_grant_exactly_once(self) -> None:
        statuses = dict(Order.objects.filter(pk__in=list(self.model.orders)).values_list(
            "pk", "status"))
        lines: dict[int, list[tuple[int, str, int]]] = {}
        for pk, order, sku, quantity in OrderItem.objects.filter(
                order_id__in=list(self.model.orders)).values_list("pk", "order_id",
                                                                   "offer__sku", "quantity"):
            lines.setdefault(order, []).append((pk, sku, quantity))
        batches: dict[int, list[tuple[str, int]]] = {}
        for line, key, initial in QuotaBatch.objects.filter(
                order_item__order_id__in=list(self.model.orders)).values_list(
                "order_item_id", "product__product_key", "initial_quantity"):
            batches.setdefault(line, []).append((key, initial))
        for pk, order in self.model.orders.items():
            assert statuses[pk] == order.status, (pk, statuses[pk], order.status)
            granted = order.status in ("paid", "refunded") and (
                not order.gift or order.claimer is not None)
            for line, sku, quantity in lines[pk]:
                got = sorted(batches.get(line, []))
                want = sorted((k, q * quantity) for k, q, _ in OFFERS[sku][2]) if granted else []
                assert got == want, (pk, sku, got, want)
        revoked = dict(Transaction.objects.filter(
            direction="DEBIT", action_type="refund").values_list(
            "quota_batch__order_item__order_id").annotate(n=Sum("amount")))
        credited = dict(Transaction.objects.filter(
            direction="CREDIT", quota_batch__order_item__isnull=False).values_list(
            "quota_batch__order_item__order_id").annotate(n=Sum("amount")))
        for pk, amount in revoked.items():
            assert amount <= credited.get(pk, 0), pk


#: Examples per run. The suite's budget is about half a minute per backend (PostgreSQL's round
#: trips cost ~4× SQLite's here); ``MONEY_EXAMPLES=2000`` runs a long search by hand.
EXAMPLES = {"sqlite": 40, "postgresql": 12}


def test_money_across_features_is_conserved() -> None:
    examples = int(os.environ.get("MONEY_EXAMPLES") or EXAMPLES.get(connection.vendor, 12))
    run_state_machine_as_test(MoneyMachine, settings=settings(
        max_examples=examples, stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
