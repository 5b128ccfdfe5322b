"""Peer acceptance suite, SPEC §4 OrderService / CustomerService / ProductService /
BalanceService and §5 signals, with every async twin.

Written from the contract only (see ``peer_support``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from django.db import transaction

from billable.exceptions import BillableError
from billable.services import (
    BalanceService,
    CustomerService,
    OrderService,
    ProductService,
    TransactionService,
)
from tests.billable.peer_support import MODES, call

pytestmark = pytest.mark.django_db
OS = OrderService


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def catalog(make_product, make_offer):
    credits = make_product("CREDITS", name="Credits")
    return {
        "pack": make_offer("PACK_10", items=[(credits, 10)], price="4.99"),
        "big": make_offer("PACK_100", items=[(credits, 100)], price="40.00"),
        "stars": make_offer("STARS_10", items=[(credits, 10)], price="50", currency="XTR"),
    }


def order_for(user, sku="pack_10", quantity=1):
    return OS.create_order(user.id, [{"sku": sku, "quantity": quantity}])


# -- create_order -----------------------------------------------------------------------------


def test_create_order_prices_come_from_the_catalog(mode, user, catalog) -> None:
    order = call(mode, OS, "create_order", user.id,
                 [{"sku": "pack_10", "quantity": 2, "price": "0.01"},
                  {"sku": "PACK_100", "quantity": 1, "price": "40.00"}],
                 metadata={"source": "web_checkout"})
    assert order.status == "pending" and order.user_id == user.id
    assert order.total_amount == Decimal("49.98") and isinstance(order.total_amount, Decimal)
    assert order.currency == "USD" and order.metadata["source"] == "web_checkout"
    lines = {item.offer.sku: item for item in order.items.all()}
    assert lines["PACK_10"].price == Decimal("4.99") and lines["PACK_10"].quantity == 2
    assert lines["PACK_100"].price == Decimal("40.00")

@pytest.mark.parametrize("items, message", [
    ([{"quantity": 1}], "Item must have 'sku'"),
    ([{"sku": "", "quantity": 1}], "Item must have 'sku'"),
    ([{"sku": None, "quantity": 1}], "Item must have 'sku'"),
    ([{"sku": "no_such", "quantity": 1}], "Offer not found for sku: 'no_such'"),
])
def test_create_order_sku_errors(mode, user, catalog, items, message) -> None:
    from billable.models import Order

    with pytest.raises(ValueError) as caught:
        call(mode, OS, "create_order", user.id, items)
    assert str(caught.value) == message
    assert isinstance(caught.value, BillableError)
    assert Order.objects.count() == 0


def test_inactive_offer_cannot_be_ordered(mode, user, catalog) -> None:
    catalog["pack"].is_active = False
    catalog["pack"].save()
    with pytest.raises(ValueError) as caught:
        call(mode, OS, "create_order", user.id, [{"sku": "Pack_10", "quantity": 1}])
    assert str(caught.value) == "Offer not found for sku: 'Pack_10'"


@pytest.mark.parametrize("quantity", [0, -1, 1.5, "2", None, True, 10**30])
def test_create_order_quantity_must_be_a_positive_int(mode, user, catalog, quantity) -> None:
    from billable.models import Order

    with pytest.raises(BillableError) as caught:
        call(mode, OS, "create_order", user.id, [{"sku": "pack_10", "quantity": quantity}])
    assert caught.value.code in {"invalid_amount", "invalid_input"}
    assert Order.objects.count() == 0


@pytest.mark.parametrize("items", [[], None, "pack_10", [None], ["pack_10"], {"sku": "pack_10"}])
def test_create_order_malformed_items(mode, user, catalog, items) -> None:
    with pytest.raises(BillableError) as caught:
        call(mode, OS, "create_order", user.id, items)
    assert caught.value.code == "invalid_input"


def test_create_order_rejects_mixed_currencies(mode, user, catalog) -> None:
    with pytest.raises(BillableError) as caught:
        call(mode, OS, "create_order", user.id, [{"sku": "pack_10"}, {"sku": "stars_10"}])
    assert caught.value.code == "invalid_input"


@pytest.mark.parametrize("user_id", [None, 10**9, "abc"])
def test_create_order_for_unknown_user(mode, catalog, user_id) -> None:
    with pytest.raises(BillableError) as caught:
        call(mode, OS, "create_order", user_id, [{"sku": "pack_10"}])
    assert caught.value.code in {"user_not_found", "invalid_input"}


# -- process_payment --------------------------------------------------------------------------


def test_process_payment_grants_once(mode, user, catalog, django_capture_on_commit_callbacks
                                     ) -> None:
    from billable.models import Transaction
    from billable.signals import order_confirmed

    order = order_for(user, quantity=2)
    seen = []

    def receiver(sender, order, **kwargs):
        seen.append(order.pk)

    order_confirmed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert call(mode, OS, "process_payment", order.pk, payment_id="ch_1",
                        payment_method="stripe") is True
        with django_capture_on_commit_callbacks(execute=True):
            assert call(mode, OS, "process_payment", order.pk, payment_id="ch_1",
                        payment_method="stripe") is True
    finally:
        order_confirmed.disconnect(receiver)
    order.refresh_from_db()
    assert order.status == "paid" and order.paid_at is not None
    assert order.payment_id == "ch_1" and order.payment_method == "stripe"
    assert seen == [order.pk]
    assert TransactionService.get_balance(user.id, "credits") == 20
    credit = Transaction.objects.get(user=user)
    assert credit.action_type == "purchase" and credit.related_object == order.items.get()


def test_payment_refusals_grant_nothing(mode, user, catalog) -> None:
    paid = order_for(user)
    OS.process_payment(paid.pk, payment_id="ch_A", payment_method="stripe")
    other = order_for(user)
    with pytest.raises(BillableError) as caught:
        call(mode, OS, "process_payment", paid.pk, payment_id="ch_B", payment_method="stripe")
    assert caught.value.code == "payment_conflict"
    with pytest.raises(BillableError) as caught:
        call(mode, OS, "process_payment", other.pk, payment_id="ch_A", payment_method="stripe")
    assert caught.value.code == "payment_conflict"
    other.refresh_from_db()
    assert other.status == "pending"
    assert TransactionService.get_balance(user.id, "credits") == 10


def test_closed_orders_are_never_granted_again(mode, user, catalog) -> None:
    cancelled = order_for(user)
    assert call(mode, OS, "cancel_order", cancelled.pk, reason="changed mind") is True
    refunded = order_for(user)
    OS.process_payment(refunded.pk, payment_id="ch_R")
    assert call(mode, OS, "refund_order", refunded.pk) is True
    for order in (cancelled, refunded):
        with pytest.raises(BillableError) as caught:
            call(mode, OS, "process_payment", order.pk, payment_id="ch_new")
        assert caught.value.code == "order_state_conflict"
    assert TransactionService.get_balance(user.id, "credits") == 0
    cancelled.refresh_from_db()
    refunded.refresh_from_db()
    assert (cancelled.status, refunded.status) == ("cancelled", "refunded")


@pytest.mark.parametrize("order_id", [10**9, "abc", None, -1, 1.5])
def test_unknown_orders(mode, order_id) -> None:
    for name in ("process_payment", "cancel_order", "refund_order"):
        with pytest.raises(BillableError) as caught:
            call(mode, OS, name, order_id)
        assert caught.value.code == "order_not_found", name


def test_payment_replays_as_documented(mode, user, catalog) -> None:
    """docs/orders.md: same id (and method when given) replays; no id on a paid order is a
    conflict; the same id under another method is another payment; cancel twice is a no-op."""
    order = order_for(user)
    OS.process_payment(order.pk, payment_id="ch_1", payment_method="stripe")
    assert call(mode, OS, "process_payment", order.pk, payment_id="ch_1") is True
    for kwargs in ({}, {"payment_id": "ch_1", "payment_method": "manual"}):
        with pytest.raises(BillableError) as caught:
            call(mode, OS, "process_payment", order.pk, **kwargs)
        assert caught.value.code == "payment_conflict"
    other = order_for(user)
    assert call(mode, OS, "process_payment", other.pk, payment_id="ch_1",
                payment_method="paypal") is True
    manual = order_for(user)
    assert call(mode, OS, "process_payment", manual.pk) is True
    manual.refresh_from_db()
    assert manual.payment_method == "manual"
    pending = order_for(user)
    assert call(mode, OS, "cancel_order", pending.pk) is True
    assert call(mode, OS, "cancel_order", pending.pk) is True
    assert TransactionService.get_balance(user.id, "credits") == 30


def test_cancel_and_refund_only_from_the_right_state(mode, user, catalog) -> None:
    pending = order_for(user)
    assert call(mode, OS, "refund_order", pending.pk) is False
    OS.process_payment(pending.pk, payment_id="ch_X")
    assert call(mode, OS, "cancel_order", pending.pk) is False
    TransactionService.consume_quota(user.id, "credits", amount=3)
    assert call(mode, OS, "refund_order", pending.pk, reason="fraud") is True
    assert call(mode, OS, "refund_order", pending.pk) is False
    pending.refresh_from_db()
    assert pending.status == "refunded"
    assert TransactionService.get_balance(user.id, "credits") == 0
    assert TransactionService.check_ledger(user.id) == []


async def test_aserialize_order_to_dict(user, catalog) -> None:
    from asgiref.sync import sync_to_async

    order = await sync_to_async(order_for)(user, quantity=3)
    await OS.aprocess_payment(order.pk, payment_id="ch_S", payment_method="stripe")
    order = await OS.aget_order(order.pk)
    data = await OS.aserialize_order_to_dict(order)
    assert set(data) == {"id", "user_id", "status", "total_amount", "currency",
                         "payment_method", "payment_id", "created_at", "paid_at", "items",
                         "metadata"}
    assert data["id"] == order.pk and data["user_id"] == user.id
    assert data["status"] == "paid" and data["currency"] == "USD"
    assert Decimal(str(data["total_amount"])) == Decimal("14.97")
    assert not isinstance(data["total_amount"], float)
    assert data["payment_id"] == "ch_S" and data["payment_method"] == "stripe"
    assert isinstance(data["created_at"], (str, datetime))
    [item] = data["items"]
    assert set(item) == {"id", "sku", "quantity", "price"}
    assert item["sku"] == "PACK_10" and item["quantity"] == 3
    assert Decimal(str(item["price"])) == Decimal("4.99")
    assert not isinstance(item["price"], float)


@pytest.mark.parametrize("order", [None, 10**9, "abc", 1.5, object()])
def test_serialize_and_revoke_refuse_unknown_orders(mode, order) -> None:
    with pytest.raises(BillableError) as caught:
        call(mode, OS, "serialize_order_to_dict", order)
    assert caught.value.code == "order_not_found"
    with pytest.raises(BillableError) as caught:
        call(mode, TransactionService, "revoke_order_items", order)
    assert caught.value.code == "order_not_found"


def test_serialize_accepts_an_order_id(user, catalog) -> None:
    order = order_for(user)
    assert OS.serialize_order_to_dict(order.pk) == OS.serialize_order_to_dict(order)


# -- CustomerService ----------------------------------------------------------------------------


def test_merge_moves_everything_and_reports_counts(mode, make_user, catalog,
                                                    django_capture_on_commit_callbacks) -> None:
    from billable.models import ExternalIdentity, Order, Referral
    from billable.signals import customers_merged

    target, source, referrer = make_user(), make_user(), make_user()
    TransactionService.grant_offer(target.id, catalog["pack"])
    order = order_for(source)
    OS.process_payment(order.pk, payment_id="ch_M")
    TransactionService.consume_quota(source.id, "credits", amount=2)
    ExternalIdentity.objects.create(provider="telegram", external_id="42", user=source)
    Referral.objects.create(referrer=referrer, referee=source)
    got = []

    def receiver(sender, target_user_id, source_user_id, **kwargs):
        got.append((target_user_id, source_user_id))

    customers_merged.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            stats = call(mode, CustomerService, "merge_customers", target.id, source.id)
    finally:
        customers_merged.disconnect(receiver)
    assert stats == {"moved_orders": 1, "moved_batches": 1, "moved_transactions": 2,
                     "moved_identities": 1, "moved_referrals": 1}
    assert got == [(target.id, source.id)]
    assert TransactionService.get_balance(target.id, "credits") == 18
    assert TransactionService.get_balance(source.id, "credits") == 0
    assert Order.objects.get(pk=order.pk).user_id == target.id
    assert ExternalIdentity.get_user_by_identity("42", provider="telegram") == target
    assert Referral.objects.get(referrer=referrer).referee_id == target.id
    assert TransactionService.check_ledger() == []


def test_merge_errors(mode, make_user) -> None:
    from billable.models import ExternalIdentity

    a, b = make_user(), make_user()

    def refused(target, source):
        with pytest.raises(BillableError) as caught:
            call(mode, CustomerService, "merge_customers", target, source)
        return str(caught.value)

    assert refused(a.id, a.id) == "Target and source users must be different."
    assert refused(10**9, a.id) == f"Target user {10**9} does not exist."
    assert refused(a.id, 10**9) == f"Source user {10**9} does not exist."
    ExternalIdentity.objects.create(provider="telegram", external_id="1", user=a)
    ExternalIdentity.objects.create(provider="telegram", external_id="2", user=b)
    assert refused(a.id, b.id) == \
        "Identity conflict: both users have different external_ids for provider telegram."
    for bad in (None, "abc", ""):
        with pytest.raises(BillableError):
            call(mode, CustomerService, "merge_customers", a.id, bad)

def test_merge_with_string_ids(make_user) -> None:
    target, source = make_user(), make_user()
    stats = CustomerService.merge_customers(str(target.id), str(source.id))
    assert set(stats) == {"moved_orders", "moved_batches", "moved_transactions",
                          "moved_identities", "moved_referrals"}


# -- ProductService / BalanceService -----------------------------------------------------------


def test_product_service(mode, make_product) -> None:
    make_product("ZED", name="Zed")
    alpha = make_product("ALPHA", name="Alpha")
    make_product("OFF", name="Off", is_active=False)
    trial = make_product("TRY", name="Free trial")
    assert [p.name for p in call(mode, ProductService, "get_active_products")] == [
        "Alpha", "Free trial", "Zed"]
    assert call(mode, ProductService, "get_product_by_key", "alpha") == alpha
    assert call(mode, ProductService, "get_product_by_key", "missing") is None
    assert trial in ProductService.get_trial_products()
    for bad in ("", None):
        try:
            assert call(mode, ProductService, "get_product_by_key", bad) is None
        except BillableError as exc:
            assert exc.code in {"invalid_product_key", "invalid_input"}


def test_balance_service_reads(mode, user, catalog, make_product, make_offer) -> None:
    sub = make_product("SUB", product_type="period")
    TransactionService.grant_offer(user.id, make_offer("SUB_30", items=[(sub, 1, "days", 30)]))
    TransactionService.grant_offer(user.id, catalog["pack"])
    TransactionService.grant_offer(user.id, catalog["pack"])
    TransactionService.consume_quota(user.id, "credits", amount=3)
    active = call(mode, BalanceService, "get_user_active_products", user.id)
    assert len(active) == 3 and active[0] is not None
    if mode == "async":
        assert isinstance(active, list)
    only = call(mode, BalanceService, "get_user_active_products", user.id, product_key="credits")
    assert len(only) == 2
    summary = call(mode, BalanceService, "get_balance_summary", user.id)
    assert set(summary) == {"CREDITS", "SUB"}
    for entry in summary.values():
        assert set(entry) == {"total", "used", "remaining", "is_unlimited", "expiry"}
    assert summary["CREDITS"]["total"] == 20 and summary["CREDITS"]["used"] == 3
    assert summary["CREDITS"]["remaining"] == 17
    assert summary["CREDITS"]["is_unlimited"] is False
    assert summary["SUB"]["expiry"] is not None
    assert call(mode, BalanceService, "get_balance_summary", user.id + 1000) in ({},)


# -- §5 signals -----------------------------------------------------------------------------------


def test_signals_wait_for_the_commit_and_skip_rollbacks(user, catalog,
                                                        django_capture_on_commit_callbacks
                                                        ) -> None:
    from billable.signals import quota_consumed, transaction_created

    rows, usages = [], []

    def on_row(sender, transaction, **kwargs):
        rows.append(transaction.direction)

    def on_usage(sender, usage, **kwargs):
        usages.append(usage.amount)

    transaction_created.connect(on_row)
    quota_consumed.connect(on_usage)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            TransactionService.grant_offer(user.id, catalog["pack"])
            TransactionService.consume_quota(user.id, "credits", amount=2)
            assert rows == [] and usages == []
        for callback in callbacks:
            callback()
        assert rows == ["CREDIT", "DEBIT"] and usages == [2]
    finally:
        transaction_created.disconnect(on_row)
        quota_consumed.disconnect(on_usage)


@pytest.mark.django_db(transaction=True)
def test_no_signal_for_work_rolled_back_and_receivers_cannot_undo_a_payment(
        make_user, make_product, make_offer) -> None:
    from billable.signals import order_confirmed, transaction_created

    user = make_user()
    credits = make_product("CREDITS")
    make_offer("PACK_10", items=[(credits, 10)], price="1")
    seen = []

    def on_row(sender, transaction, **kwargs):
        seen.append(transaction.pk)

    def explode(sender, order, **kwargs):
        raise RuntimeError("receiver failed")

    transaction_created.connect(on_row)
    order_confirmed.connect(explode)
    try:
        class Abort(Exception):
            pass

        with pytest.raises(Abort), transaction.atomic():
            TransactionService.grant_offer(user.id, "pack_10")
            raise Abort
        assert seen == []
        order = OS.create_order(user.id, [{"sku": "pack_10"}])
        assert OS.process_payment(order.pk, payment_id="ch_T") is True
        order.refresh_from_db()
        assert order.status == "paid"
        assert TransactionService.get_balance(user.id, "credits") == 10
        assert len(seen) == 1
    finally:
        transaction_created.disconnect(on_row)
        order_confirmed.disconnect(explode)


@pytest.mark.django_db(transaction=True)
async def test_async_receivers_run_for_async_callers(make_user, make_product, make_offer
                                                     ) -> None:
    import asyncio

    from asgiref.sync import sync_to_async

    from billable.signals import quota_consumed

    user = await sync_to_async(make_user)()
    credits = await sync_to_async(make_product)("CREDITS")
    await sync_to_async(make_offer)("PACK_10", items=[(credits, 10)])
    await sync_to_async(TransactionService.grant_offer)(user.id, "pack_10")
    got: list[int] = []
    done = asyncio.Event()

    async def receiver(sender, usage, **kwargs):
        got.append(usage.amount)
        done.set()

    quota_consumed.connect(receiver)
    try:
        result = await TransactionService.aconsume_quota(user.id, "credits", amount=4)
        assert result["success"] is True
        await asyncio.wait_for(done.wait(), 5)
    finally:
        quota_consumed.disconnect(receiver)
    assert got == [4]


def test_trial_and_referral_signals(make_user, make_product, make_offer,
                                    django_capture_on_commit_callbacks) -> None:
    from billable.services import ReferralService, TrialService
    from billable.signals import referral_attached, trial_activated

    trial_product = make_product("TRIAL_P")
    make_offer("TRIAL_O", items=[(trial_product, 3)], price="0")
    a, b = make_user(), make_user()
    events = []

    def on_trial(sender, user_id, products, **kwargs):
        events.append(("trial", user_id))

    def on_referral(sender, referral, **kwargs):
        events.append(("referral", referral.referee_id))

    trial_activated.connect(on_trial)
    referral_attached.connect(on_referral)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            TrialService.claim_trial(a.id, "trial_o", identities={"telegram": "555"})
            ReferralService.assign_referrer(a.id, b.id)
    finally:
        trial_activated.disconnect(on_trial)
        referral_attached.disconnect(on_referral)
    assert events == [("trial", a.id), ("referral", b.id)]


@pytest.mark.django_db(transaction=True)
def test_async_receivers_run_for_sync_callers_and_cannot_break_them(make_user, make_product,
                                                                    make_offer) -> None:
    from billable.signals import quota_consumed

    user = make_user()
    make_offer("PACK_5", items=[(make_product("CREDITS"), 5)])
    TransactionService.grant_offer(user.id, "pack_5")
    got: list[int] = []

    async def receiver(sender, usage, **kwargs):
        got.append(usage.amount)

    async def failing(sender, **kwargs):
        raise RuntimeError("receiver failed")

    quota_consumed.connect(receiver)
    quota_consumed.connect(failing)
    try:
        result = TransactionService.consume_quota(user.id, "credits", amount=2)
    finally:
        quota_consumed.disconnect(receiver)
        quota_consumed.disconnect(failing)
    assert result["success"] is True and result["remaining"] == 3
    assert got == [2]
