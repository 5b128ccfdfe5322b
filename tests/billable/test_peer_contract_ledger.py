"""Peer acceptance suite, SPEC §4 TransactionService: quota, grants, consumption, idempotency,
exchange, holds, expiry and revocation — every method with its async twin.

Written from the contract only (see ``peer_support``).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billable.exceptions import BillableError
from billable.services import BalanceService, TransactionService
from tests.billable.peer_support import MODES, call

pytestmark = pytest.mark.django_db
TS = TransactionService


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def credits(make_product):
    return make_product("CREDITS", name="Credits")


@pytest.fixture
def pack(make_offer, credits):
    return make_offer("PACK_10", items=[(credits, 10)], price="9.99")


@pytest.fixture
def funded(user, pack):
    """``user`` holding one batch of 10 CREDITS."""
    TS.grant_offer(user.id, pack)
    return user


def ledger_ok(user) -> None:
    assert TS.check_ledger(user.id) == []


def error_code(excinfo) -> str:
    assert isinstance(excinfo.value, BillableError), type(excinfo.value)
    return excinfo.value.code


# -- check_quota / get_balance ----------------------------------------------------------------


def test_check_quota_exact_dicts(mode, user, pack) -> None:
    assert call(mode, TS, "check_quota", user.id, "credits") == {
        "can_use": False, "product_key": "CREDITS", "remaining": 0,
        "message": "No active quota for CREDITS"}
    TS.grant_offer(user.id, pack)
    TS.grant_offer(user.id, pack)
    assert call(mode, TS, "check_quota", user.id, "Credits") == {
        "can_use": True, "product_key": "CREDITS", "product_name": "Credits", "remaining": 20,
        "message": "Available: Credits (20 left)"}


def test_check_quota_unknown_product_is_a_plain_no(mode, user) -> None:
    assert call(mode, TS, "check_quota", user.id, "nope") == {
        "can_use": False, "product_key": "NOPE", "remaining": 0,
        "message": "No active quota for NOPE"}


@pytest.mark.parametrize("key", ["", "   ", None, 42, ["CREDITS"]])
def test_empty_or_malformed_key_is_an_error_never_any_product(mode, funded, key) -> None:
    for name in ("check_quota", "get_balance", "consume_quota"):
        with pytest.raises(BillableError) as caught:
            call(mode, TS, name, funded.id, key)
        assert caught.value.code in {"invalid_product_key", "invalid_input"}
    assert TS.get_balance(funded.id, "CREDITS") == 10


def test_get_balance_is_an_int_sum_of_spendable_batches(mode, funded, pack) -> None:
    TS.grant_offer(funded.id, pack)
    balance = call(mode, TS, "get_balance", funded.id, "credits")
    assert balance == 20 and type(balance) is int
    assert call(mode, TS, "get_balance", funded.id, "other") == 0


def test_string_user_id_is_accepted(mode, funded) -> None:
    assert call(mode, TS, "get_balance", str(funded.id), "credits") == 10
    result = call(mode, TS, "consume_quota", str(funded.id), "credits")
    assert result["success"] is True and result["remaining"] == 9


@pytest.mark.parametrize("user_id", [None, "", "abc", -1, 2**31, 2**63 - 1, 10**30, 1.5, [], {},
                                     "1\x00"])
def test_bad_user_ids_give_billable_errors_or_a_plain_no(mode, pack, user_id) -> None:
    for name, args in (("check_quota", ("credits",)), ("get_balance", ("credits",)),
                       ("consume_quota", ("credits",)), ("grant_offer", (pack,)),
                       ("reserve_quota", ("credits",))):
        try:
            result = call(mode, TS, name, user_id, *args)
        except BillableError as exc:
            assert exc.code in {"invalid_input", "user_not_found", "quota_exhausted"}, name
        else:
            assert name in {"check_quota", "get_balance", "consume_quota"}, name
            assert result in (0, {"can_use": False, "product_key": "CREDITS", "remaining": 0,
                                  "message": "No active quota for CREDITS"},
                              {"success": False, "error": "quota_exhausted",
                               "message": "No active quota for CREDITS"}), (name, result)


def test_unknown_user_cannot_be_granted(mode, pack) -> None:
    with pytest.raises(BillableError) as caught:
        call(mode, TS, "grant_offer", 987654321, pack)
    assert caught.value.code == "user_not_found"


# -- grant_offer ----------------------------------------------------------------------------


def test_grant_offer_one_batch_and_one_credit_per_item(mode, user, make_product,
                                                        make_offer) -> None:
    from django.contrib.contenttypes.models import ContentType

    from billable.models import QuotaBatch, Transaction

    a, b = make_product("GA"), make_product("GB", product_type="period")
    offer = make_offer("BUNDLE", items=[(a, 5), (b, 1, "days", 7)])
    before = timezone.now()
    batches = call(mode, TS, "grant_offer", user.id, offer, source="welcome_bonus",
                   metadata={"campaign": "x"})
    assert isinstance(batches, list) and len(batches) == 2
    assert all(isinstance(batch, QuotaBatch) for batch in batches)
    by_key = {batch.product.product_key: batch for batch in batches}
    assert by_key["GA"].initial_quantity == by_key["GA"].remaining_quantity == 5
    assert by_key["GA"].expires_at is None
    assert by_key["GB"].expires_at - before >= timedelta(days=7) - timedelta(seconds=5)
    assert by_key["GB"].expires_at - before <= timedelta(days=7, seconds=5)
    assert {batch.source_offer_id for batch in batches} == {offer.pk}
    credits = Transaction.objects.filter(user=user)
    assert credits.count() == 2
    for row in credits:
        assert row.direction == "CREDIT" and row.action_type == "welcome_bonus"
        assert row.content_type == ContentType.objects.get_for_model(offer)
        assert str(row.object_id) == str(offer.pk)
        assert row.metadata["campaign"] == "x"
    assert {row.amount for row in credits} == {5, 1}
    ledger_ok(user)


def test_grant_offer_with_order_item_multiplies_and_links(mode, user, credits, pack) -> None:
    from billable.models import Order, OrderItem, Transaction

    order = Order.objects.create(user=user, total_amount=Decimal("29.97"), currency="USD")
    item = OrderItem.objects.create(order=order, offer=pack, quantity=3, price=pack.price)
    [batch] = call(mode, TS, "grant_offer", user.id, pack, order_item=item)
    assert batch.initial_quantity == 30 and batch.order_item_id == item.pk
    row = Transaction.objects.get(user=user)
    assert row.related_object == item and row.action_type == "purchase"


@pytest.mark.parametrize("unit, value, span", [("hours", 2, timedelta(hours=2)),
                                               ("days", 3, timedelta(days=3)),
                                               ("years", 1, None), ("months", 1, None)])
def test_grant_expiry_follows_the_period(user, credits, make_offer, unit, value, span) -> None:
    [batch] = TS.grant_offer(user.id, make_offer("TIMED", items=[(credits, 1, unit, value)]))
    if span is not None:
        assert batch.expires_at - batch.valid_from == span
    else:
        later = batch.valid_from.replace(year=batch.valid_from.year + 1) if unit == "years" \
            else None
        assert batch.expires_at > batch.valid_from
        if later is not None:
            assert batch.expires_at == later


def test_grant_refuses_an_unknown_period_unit_written_around_the_model(user, credits,
                                                                      make_offer) -> None:
    from billable.models import OfferItem, QuotaBatch

    offer = make_offer("ODD_UNIT")
    OfferItem.objects.bulk_create([OfferItem(offer=offer, product=credits, quantity=1,
                                             period_unit="weeks", period_value=1)])
    with pytest.raises(BillableError) as caught:
        TS.grant_offer(user.id, offer)
    assert caught.value.code == "invalid_input"
    assert not QuotaBatch.objects.filter(user=user).exists()

def test_grant_offer_accepts_sku_in_any_case(mode, user, pack) -> None:
    call(mode, TS, "grant_offer", user.id, "pack_10")
    assert TS.get_balance(user.id, "credits") == 10


@pytest.mark.parametrize("offer", [None, "", "nope", 10**12, -1, 1.5])
def test_grant_offer_unknown_offer(mode, user, offer) -> None:
    with pytest.raises(BillableError) as caught:
        call(mode, TS, "grant_offer", user.id, offer)
    assert caught.value.code in {"offer_not_found", "invalid_input", "invalid_product_key"}


# -- consume_quota --------------------------------------------------------------------------


def test_consume_success_dict(mode, funded) -> None:
    from billable.models import Transaction

    result = call(mode, TS, "consume_quota", funded.id, "credits", amount=3, action_id="job-1",
                  idempotency_key="k1", metadata={"report": 7})
    assert set(result) == {"success", "message", "usage_id", "remaining", "metadata"}
    assert result["success"] is True and result["message"] == "Quota consumed"
    assert isinstance(result["usage_id"], str) and uuid.UUID(result["usage_id"])
    assert result["remaining"] == 7
    assert result["metadata"]["report"] == 7
    assert result["metadata"]["idempotency_key"] == "k1"
    debit = Transaction.objects.get(user=funded, direction="DEBIT")
    assert str(debit.pk) == result["usage_id"]
    assert debit.amount == 3 and debit.action_type == "usage" and debit.object_id == "job-1"
    assert debit.metadata["report"] == 7 and debit.metadata["idempotency_key"] == "k1"
    ledger_ok(funded)


def test_consume_failure_dicts(mode, funded, user) -> None:
    assert call(mode, TS, "consume_quota", funded.id, "credits", amount=11) == {
        "success": False, "error": "insufficient_funds", "message": "Insufficient balance"}
    assert call(mode, TS, "consume_quota", funded.id, "missing") == {
        "success": False, "error": "quota_exhausted", "message": "No active quota for MISSING"}
    assert TS.get_balance(funded.id, "credits") == 10


def test_consume_spans_batches_with_one_debit_per_batch(mode, funded, pack) -> None:
    from billable.models import Transaction

    TS.grant_offer(funded.id, pack)
    result = call(mode, TS, "consume_quota", funded.id, "credits", amount=15, action_id=5)
    assert result["success"] and result["remaining"] == 5
    debits = Transaction.objects.filter(user=funded, direction="DEBIT")
    assert sorted(d.amount for d in debits) == [5, 10]
    assert {d.object_id for d in debits} == {"5"}
    assert len({d.quota_batch_id for d in debits}) == 2
    ledger_ok(funded)


@pytest.mark.parametrize("amount", [0, -1, 1.5, 2.0, "2", None, True, Decimal("1.5"), 2**70,
                                    float("nan"), Decimal("NaN")])
def test_consume_amount_must_be_a_positive_int(mode, funded, amount) -> None:
    try:
        result = call(mode, TS, "consume_quota", funded.id, "credits", amount=amount)
    except BillableError as exc:
        assert exc.code in {"invalid_amount", "invalid_input"}
    else:
        # only a huge whole number may get the ordinary refusal instead
        assert amount == 2**70, result
        assert result["error"] == "insufficient_funds"
    assert TS.get_balance(funded.id, "credits") == 10

def test_consumption_order_fifo_and_expiring_first(settings, user, credits, make_offer) -> None:
    from billable.models import QuotaBatch

    forever = make_offer("FOREVER", items=[(credits, 5)])
    short = make_offer("SHORT", items=[(credits, 5, "days", 1)])
    [old] = TS.grant_offer(user.id, forever)
    [soon] = TS.grant_offer(user.id, short)
    TS.consume_quota(user.id, "credits")
    assert QuotaBatch.objects.get(pk=old.pk).remaining_quantity == 4
    settings.BILLABLE_CONSUMPTION_ORDER = "expiring_first"
    TS.consume_quota(user.id, "credits")
    assert QuotaBatch.objects.get(pk=soon.pk).remaining_quantity == 4
    ledger_ok(user)


# -- idempotency ----------------------------------------------------------------------------


def test_consume_replay_returns_the_original_usage(mode, funded) -> None:
    first = call(mode, TS, "consume_quota", funded.id, "credits", idempotency_key="r1")
    again = call(mode, TS, "consume_quota", funded.id, "CREDITS", idempotency_key="r1")
    assert again["success"] is True and again["usage_id"] == first["usage_id"]
    assert "idempotent" in again["message"]
    assert again["remaining"] == 9
    assert TS.get_balance(funded.id, "credits") == 9


@pytest.mark.parametrize("change", [{"amount": 2}, {"product_key": "other"},
                                    {"action_type": "export"}])
def test_consume_key_reused_differently_is_a_conflict(mode, funded, make_product, make_offer,
                                                       change) -> None:
    other = make_product("OTHER")
    TS.grant_offer(funded.id, make_offer("OTHER_5", items=[(other, 5)]))
    call(mode, TS, "consume_quota", funded.id, "credits", idempotency_key="c1")
    kwargs = {"product_key": "credits", "idempotency_key": "c1", **change}
    result = call(mode, TS, "consume_quota", funded.id, **kwargs)
    assert result["success"] is False and result["error"] == "idempotency_conflict"
    assert isinstance(result["message"], str) and result["message"]
    assert TS.get_balance(funded.id, "credits") == 9
    assert TS.get_balance(funded.id, "other") == 5

# -- exchange ---------------------------------------------------------------------------------


@pytest.fixture
def coins(make_product, make_offer, user):
    coin = make_product("COINS", is_currency=True)
    TS.grant_offer(user.id, make_offer("COINS_100", items=[(coin, 100)]))
    return coin


@pytest.fixture
def premium(make_product, make_offer):
    product = make_product("PREMIUM", product_type="period")
    return make_offer("PREMIUM_MONTH", items=[(product, 1, "days", 30)], price="30",
                      currency="coins")


def test_exchange_success(mode, user, coins, premium) -> None:
    from billable.models import Transaction

    result = call(mode, TS, "exchange", user.id, offer_id=premium.pk, metadata={"via": "bot"})
    assert result == {"success": True, "message": "Exchanged",
                      "metadata": {"via": "bot", "price": 30}}
    assert type(result["metadata"]["price"]) is int
    assert TS.get_balance(user.id, "coins") == 70
    assert TS.check_quota(user.id, "premium")["can_use"] is True
    debit = Transaction.objects.get(user=user, direction="DEBIT")
    assert debit.related_object == premium
    credit = Transaction.objects.get(user=user, direction="CREDIT", action_type="exchange")
    assert credit.quota_batch.product.product_key == "PREMIUM"
    ledger_ok(user)


def test_exchange_by_offer_instance_and_idempotency(mode, user, coins, premium) -> None:
    call(mode, TS, "exchange", user.id, offer=premium, idempotency_key="x1")
    again = call(mode, TS, "exchange", user.id, offer=premium, idempotency_key="x1")
    assert again["success"] is True
    assert TS.get_balance(user.id, "coins") == 70
    ledger_ok(user)

def test_exchange_refusals_and_messages(mode, user, coins, premium, make_product,
                                        make_offer) -> None:
    def refused(**kwargs):
        with pytest.raises(BillableError) as caught:
            call(mode, TS, "exchange", user.id, **kwargs)
        return caught.value

    assert refused().message == "Offer not found"
    assert refused(offer_id=10**9).message == "Offer not found"
    assert refused(offer_id="abc").message == "Offer not found"
    premium.is_active = False
    premium.save()
    assert refused(offer_id=premium.pk).message == "Offer not found"
    nocur = make_offer("NOCUR", items=[(make_product(), 1)], price="5", currency="GEMS")
    assert str(refused(offer=nocur)) == "Currency product 'GEMS' not found."
    make_product("PLAIN")
    plain = make_offer("PLAIN_OFF", items=[(make_product(), 1)], price="5", currency="plain")
    assert str(refused(offer=plain)) == \
        "Product 'PLAIN' is not marked as a currency for exchange."
    coins.is_active = False
    coins.save()
    live = make_offer("LIVE", items=[(make_product(), 1)], price="5", currency="COINS")
    assert refused(offer=live).code == "currency_invalid"
    # an inactive product is no longer sold, but the units already held stay (docs/ledger.md)
    assert TS.get_balance(user.id, "coins") == 100
    assert TS.consume_quota(user.id, "coins")["remaining"] == 99


# -- holds ------------------------------------------------------------------------------------


def test_hold_commit_all(mode, funded) -> None:
    rid = call(mode, TS, "reserve_quota", funded.id, "credits", amount=4)
    assert isinstance(rid, str)
    assert TS.get_balance(funded.id, "credits") == 6
    ledger_ok(funded)
    result = call(mode, TS, "commit_reservation", rid)
    assert result["success"] is True and result["remaining"] == 6
    again = call(mode, TS, "commit_reservation", rid)
    assert again["usage_id"] == result["usage_id"] and "idempotent" in again["message"]
    assert call(mode, TS, "release_reservation", rid) is False
    assert TS.get_balance(funded.id, "credits") == 6
    ledger_ok(funded)


def test_hold_commit_part_returns_the_rest(mode, funded) -> None:
    rid = call(mode, TS, "reserve_quota", funded.id, "credits", amount=4)
    result = call(mode, TS, "commit_reservation", rid, amount=1)
    assert result["success"] is True
    assert TS.get_balance(funded.id, "credits") == 9
    ledger_ok(funded)


def test_hold_release_returns_all_and_is_idempotent(mode, funded) -> None:
    rid = call(mode, TS, "reserve_quota", funded.id, "credits", amount=10)
    assert TS.get_balance(funded.id, "credits") == 0
    assert call(mode, TS, "release_reservation", rid) is True
    assert call(mode, TS, "release_reservation", rid) is True
    assert TS.get_balance(funded.id, "credits") == 10
    with pytest.raises(BillableError) as caught:
        call(mode, TS, "commit_reservation", rid)
    assert caught.value.code == "reservation_state_conflict"
    ledger_ok(funded)


def test_hold_refusals(mode, funded) -> None:
    with pytest.raises(BillableError) as caught:
        call(mode, TS, "reserve_quota", funded.id, "credits", amount=11)
    assert caught.value.code == "insufficient_funds"
    with pytest.raises(BillableError) as caught:
        call(mode, TS, "reserve_quota", funded.id, "missing")
    assert caught.value.code == "quota_exhausted"
    for amount in (0, -2, "1", 1.5):
        with pytest.raises(BillableError) as caught:
            call(mode, TS, "reserve_quota", funded.id, "credits", amount=amount)
        assert caught.value.code in {"invalid_amount", "invalid_input"}
    rid = TS.reserve_quota(funded.id, "credits", amount=2)
    with pytest.raises(BillableError) as caught:
        call(mode, TS, "commit_reservation", rid, amount=3)
    assert caught.value.code in {"invalid_amount", "invalid_input"}
    for bad in (str(uuid.uuid4()), "abc", None, 12):
        for name in ("commit_reservation", "release_reservation"):
            with pytest.raises(BillableError) as caught:
                call(mode, TS, name, bad)
            assert caught.value.code in {"reservation_not_found", "invalid_input"}
    assert TS.get_balance(funded.id, "credits") == 8


def test_hold_idempotency_key_replays(mode, funded) -> None:
    first = call(mode, TS, "reserve_quota", funded.id, "credits", amount=2, idempotency_key="h")
    again = call(mode, TS, "reserve_quota", funded.id, "credits", amount=2, idempotency_key="h")
    assert again == first
    assert TS.get_balance(funded.id, "credits") == 8

# -- expire_batches / revoke_order_items ---------------------------------------------------------


def test_expire_batches_writes_the_remainder_off(user, credits, make_offer) -> None:
    from billable.models import QuotaBatch, Transaction

    offer = make_offer("DAY", items=[(credits, 5, "days", 1)])
    [batch] = TS.grant_offer(user.id, offer)
    TS.consume_quota(user.id, "credits", amount=2)
    QuotaBatch.objects.filter(pk=batch.pk).update(expires_at=timezone.now() - timedelta(1))
    assert TS.expire_batches() == 1
    assert TS.expire_batches() == 0
    batch.refresh_from_db()
    assert batch.state == "EXPIRED" and batch.remaining_quantity == 0
    row = Transaction.objects.get(user=user, action_type="expiration")
    assert row.direction == "DEBIT" and row.amount == 3
    ledger_ok(user)


def test_deactivate_expired_products_honours_user_id(make_user, credits, make_offer) -> None:
    from billable.models import QuotaBatch

    offer = make_offer("DAY2", items=[(credits, 5, "days", 1)])
    a, b = make_user(), make_user()
    TS.grant_offer(a.id, offer)
    TS.grant_offer(b.id, offer)
    QuotaBatch.objects.update(expires_at=timezone.now() - timedelta(1))
    assert BalanceService.deactivate_expired_products(user_id=a.id) == 1
    assert QuotaBatch.objects.get(user=b).state == "ACTIVE"
    assert BalanceService.deactivate_expired_products() == 1


def test_revoke_order_items(mode, user, pack) -> None:
    from billable.models import Order, OrderItem, QuotaBatch, Transaction

    order = Order.objects.create(user=user, total_amount=Decimal("9.99"), currency="USD")
    item = OrderItem.objects.create(order=order, offer=pack, quantity=1, price=pack.price)
    TS.grant_offer(user.id, pack, order_item=item)
    TS.consume_quota(user.id, "credits", amount=4)
    assert call(mode, TS, "revoke_order_items", order) == 1
    assert call(mode, TS, "revoke_order_items", order) == 0
    assert QuotaBatch.objects.get(user=user).state == "REVOKED"
    row = Transaction.objects.get(user=user, action_type="refund")
    assert row.direction == "DEBIT" and row.amount == 6
    assert TS.get_balance(user.id, "credits") == 0
    ledger_ok(user)


def test_ledger_invariant_by_hand_after_a_story(user, pack, credits, make_offer) -> None:
    from django.db.models import Sum

    from billable.models import QuotaBatch, Transaction

    TS.grant_offer(user.id, pack)
    TS.grant_offer(user.id, make_offer("DAYX", items=[(credits, 7, "days", 1)]))
    TS.consume_quota(user.id, "credits", amount=12)
    rid = TS.reserve_quota(user.id, "credits", amount=2)
    TS.commit_reservation(rid, amount=1)
    QuotaBatch.objects.filter(expires_at__isnull=False).update(
        expires_at=timezone.now() - timedelta(1))
    TS.expire_batches()
    for batch in QuotaBatch.objects.filter(user=user):
        rows = Transaction.objects.filter(quota_batch=batch)
        credit = rows.filter(direction="CREDIT").aggregate(s=Sum("amount"))["s"] or 0
        debit = rows.filter(direction="DEBIT").aggregate(s=Sum("amount"))["s"] or 0
        assert credit == batch.initial_quantity
        assert batch.initial_quantity - debit == batch.remaining_quantity
    ledger_ok(user)
