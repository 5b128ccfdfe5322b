"""TransactionService reads and consumption: order, spendability, validation, idempotency."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from billable.exceptions import InvalidAmount, InvalidInput, InvalidProductKey
from billable.models import Offer, Product, QuotaBatch, Transaction
from billable.services import TransactionService
from billable.signals import quota_consumed, transaction_created
from tests.billable.ledger_support import ledger, ledger_rows, make_batch

pytestmark = pytest.mark.django_db
__all__ = ["ledger"]


@pytest.fixture
def credits(make_product):
    return make_product("CREDITS", name="Credits")


def test_grant_check_consume_story(ledger, user, credits, make_offer):
    offer = make_offer("PACK_100", items=[(credits, 100)])
    batches = ledger.grant_offer(user.id, offer)
    assert [b.initial_quantity for b in batches] == [100]
    assert ledger.get_balance(user.id, "CREDITS") == 100
    assert ledger.check_quota(user.id, "credits") == {
        "can_use": True, "product_key": "CREDITS", "product_name": "Credits", "remaining": 100,
        "message": "Available: Credits (100 left)",
    }
    result = ledger.consume_quota(user.id, "credits", amount=30)
    assert result["success"] is True
    assert result["message"] == "Quota consumed"
    assert result["remaining"] == 70
    assert Transaction.objects.get(pk=result["usage_id"]).amount == 30
    assert TransactionService.check_ledger() == []


def test_check_quota_without_batches(ledger, user):
    assert ledger.check_quota(user.id, "nothing") == {
        "can_use": False, "product_key": "NOTHING", "remaining": 0,
        "message": "No active quota for NOTHING",
    }


def test_consume_spends_oldest_batch_first_across_batches(user, credits):
    old = make_batch(user, credits, 3, age_days=3)
    middle = make_batch(user, credits, 3, age_days=2)
    new = make_batch(user, credits, 3, age_days=1)
    result = TransactionService.consume_quota(user.id, "CREDITS", amount=7)
    assert result["remaining"] == 2
    for batch in (old, middle, new):
        batch.refresh_from_db()
    assert [old.remaining_quantity, middle.remaining_quantity, new.remaining_quantity] == [0, 0, 2]
    assert [old.state, middle.state, new.state] == ["EXHAUSTED", "EXHAUSTED", "ACTIVE"]
    debits = Transaction.objects.filter(direction="DEBIT").order_by("quota_batch__created_at")
    assert [(d.quota_batch_id, d.amount) for d in debits] == [(old.pk, 3), (middle.pk, 3),
                                                              (new.pk, 1)]
    assert TransactionService.check_ledger() == []


def test_expiring_first_order_spends_soonest_expiry_and_never_expiring_last(
        user, credits, settings):
    settings.BILLABLE_CONSUMPTION_ORDER = "expiring_first"
    forever = make_batch(user, credits, 2, age_days=5)
    late = make_batch(user, credits, 2, age_days=4, expires_in_days=20)
    soon = make_batch(user, credits, 2, age_days=1, expires_in_days=2)
    TransactionService.consume_quota(user.id, "CREDITS", amount=3)
    remaining = {b.pk: b.remaining_quantity for b in QuotaBatch.objects.all()}
    assert (remaining[soon.pk], remaining[late.pk], remaining[forever.pk]) == (0, 1, 2)


def test_every_read_path_ignores_expired_and_not_yet_valid_batches(ledger, user, credits):
    make_batch(user, credits, 5, age_days=3, expires_in_days=-1)  # expired, job not run
    make_batch(user, credits, 7, valid_in_days=2)  # not valid yet
    assert ledger.get_balance(user.id, "CREDITS") == 0
    assert ledger.check_quota(user.id, "CREDITS")["can_use"] is False
    result = ledger.consume_quota(user.id, "CREDITS")
    assert result == {"success": False, "error": "quota_exhausted",
                      "message": "No active quota for CREDITS"}
    from billable.exceptions import QuotaExhausted
    from billable.services import BalanceService

    with pytest.raises(QuotaExhausted):
        ledger.reserve_quota(user.id, "CREDITS")
    assert list(BalanceService.get_user_active_products(user.id)) == []
    assert BalanceService.get_balance_summary(user.id) == {}


def test_insufficient_balance_spanning_batches_changes_nothing(ledger, user, credits):
    make_batch(user, credits, 5, age_days=2)
    make_batch(user, credits, 5, age_days=1)
    before = ledger_rows()
    assert ledger.consume_quota(user.id, "CREDITS", amount=11) == {
        "success": False, "error": "insufficient_funds", "message": "Insufficient balance"}
    assert ledger.get_balance(user.id, "CREDITS") == 10
    assert ledger_rows() == before


@pytest.mark.parametrize("amount", [0, -1, 1.5, 2.0, Decimal("1.5"), "2", True, None, 2**40])
@pytest.mark.parametrize("method", ["consume_quota", "reserve_quota"])
def test_bad_amounts_are_refused_and_nothing_written(ledger, user, credits, amount, method):
    make_batch(user, credits, 10)
    before = ledger_rows()
    with pytest.raises(InvalidAmount) as info:
        getattr(ledger, method)(user.id, "CREDITS", amount=amount)
    assert info.value.code == "invalid_amount"
    assert "positive integer" in info.value.message
    assert ledger_rows() == before
    assert TransactionService.get_balance(user.id, "CREDITS") == 10


def test_consume_accepts_whole_decimal(user, credits):
    make_batch(user, credits, 10)
    assert TransactionService.consume_quota(user.id, "CREDITS", amount=Decimal("2"))[
        "remaining"] == 8


@pytest.mark.parametrize("key", ["", "   ", None, 5, b"CREDITS"])
@pytest.mark.parametrize("method", ["check_quota", "get_balance", "consume_quota",
                                    "reserve_quota"])
def test_empty_or_non_string_product_key_is_refused(ledger, user, credits, key, method):
    make_batch(user, credits, 10)
    before = ledger_rows()
    with pytest.raises(InvalidProductKey):
        getattr(ledger, method)(user.id, key)
    assert ledger_rows() == before


@pytest.mark.parametrize("user_id", [None, "", "abc", 1.0, True])
def test_bad_user_ids_are_refused(user_id):
    with pytest.raises(InvalidInput):
        TransactionService.get_balance(user_id, "CREDITS")


def test_keys_are_case_insensitive_on_every_path(ledger, user, make_product, make_offer):
    product = make_product("gen_ai")
    assert product.product_key == "GEN_AI"
    make_offer("off_welcome_trial", items=[(product, 5)])
    offer = async_get_offer("off_welcome_trial")
    assert offer.sku == "OFF_WELCOME_TRIAL"
    ledger.grant_offer(user.id, "Off_Welcome_Trial")
    assert ledger.get_balance(user.id, "Gen_Ai") == 5
    assert ledger.consume_quota(user.id, "gen_ai", amount=2)["remaining"] == 3
    assert ledger.check_quota(user.id, "GEN_ai")["product_key"] == "GEN_AI"


def async_get_offer(sku: str) -> Offer:
    from asgiref.sync import async_to_sync

    async def fetch() -> Offer:
        return await Offer.objects.aget(sku=sku)

    return async_to_sync(fetch)()


def test_product_key_and_sku_share_one_namespace(make_product, make_offer):
    from django.core.exceptions import ValidationError

    make_product("GOLD")
    with pytest.raises(ValidationError) as info:
        make_offer("gold")
    assert info.value.message_dict["sku"] == ["Conflict: 'GOLD' is already used as a Product Key."]
    with pytest.raises(ValidationError):
        Offer.objects.bulk_create([Offer(sku="gold", name="x")])
    make_offer("SILVER_PACK")
    with pytest.raises(ValidationError):
        Product.objects.filter(product_key="GOLD").update(product_key="silver_pack")
    gold = Product.objects.get(product_key="gold")
    gold.product_key = "Silver_Pack"
    with pytest.raises(ValidationError):
        Product.objects.bulk_update([gold], ["product_key"])
    with pytest.raises(ValidationError):
        Product.objects.get_or_create(product_key="silver_pack", defaults={"name": "x"})
    assert Product.objects.filter(product_key="SILVER_PACK").count() == 0


def test_debit_rows_carry_metadata_key_and_action_id(user, credits):
    make_batch(user, credits, 10)
    result = TransactionService.consume_quota(
        user.id, "CREDITS", action_type="pdf_export", amount=2, action_id=42,
        idempotency_key="report-1", metadata={"report": 7})
    debit = Transaction.objects.get(pk=result["usage_id"])
    assert debit.direction == "DEBIT"
    assert debit.action_type == "pdf_export"
    assert debit.object_id == "42"
    assert debit.metadata == {"report": 7, "idempotency_key": "report-1"}
    assert result["metadata"] == debit.metadata


def test_idempotent_replay_returns_the_original_usage(ledger, user, credits):
    make_batch(user, credits, 100)
    first = ledger.consume_quota(user.id, "CREDITS", amount=10, idempotency_key="k-1")
    again = ledger.consume_quota(user.id, "credits", amount=10, idempotency_key="k-1")
    assert again["success"] is True
    assert "idempotent" in again["message"]
    assert again["usage_id"] == first["usage_id"]
    assert again["remaining"] == 90
    assert Transaction.objects.filter(direction="DEBIT").count() == 1


@pytest.mark.parametrize("change", [{"amount": 11}, {"product_key": "OTHER"},
                                    {"action_type": "export"}])
def test_idempotency_key_reused_for_another_request_is_a_conflict(user, credits, make_product,
                                                                  change):
    make_product("OTHER")
    make_batch(user, credits, 100)
    base = {"product_key": "CREDITS", "amount": 10, "action_type": "usage"}
    TransactionService.consume_quota(user.id, idempotency_key="k", **base)
    result = TransactionService.consume_quota(user.id, idempotency_key="k", **{**base, **change})
    assert result["success"] is False
    assert result["error"] == "idempotency_conflict"
    assert TransactionService.get_balance(user.id, "CREDITS") == 90


def test_idempotency_keys_are_per_user(user, make_user, credits):
    other = make_user()
    make_batch(user, credits, 10)
    make_batch(other, credits, 10)
    TransactionService.consume_quota(user.id, "CREDITS", idempotency_key="same")
    result = TransactionService.consume_quota(other.id, "CREDITS", idempotency_key="same")
    assert "idempotent" not in result["message"]
    assert TransactionService.get_balance(other.id, "CREDITS") == 9


def test_failed_consume_does_not_burn_the_idempotency_key(user, credits):
    assert TransactionService.consume_quota(user.id, "CREDITS", idempotency_key="retry")[
        "error"] == "quota_exhausted"
    make_batch(user, credits, 3)
    result = TransactionService.consume_quota(user.id, "CREDITS", idempotency_key="retry")
    assert result["success"] is True
    assert result["message"] == "Quota consumed"
    assert result["remaining"] == 2


@pytest.mark.parametrize("kind", ["period", "unlimited"])
def test_entitlements_record_usage_without_depleting(ledger, user, make_product, kind):
    product = make_product("VIP", product_type=kind)
    batch = make_batch(user, product, 1, expires_in_days=30)
    for _ in range(3):
        result = ledger.consume_quota(user.id, "VIP", amount=5)
        assert result["success"] is True
        assert result["remaining"] == 1
    batch.refresh_from_db()
    assert (batch.remaining_quantity, batch.state) == (1, "ACTIVE")
    debits = Transaction.objects.filter(direction="DEBIT")
    assert [d.amount for d in debits] == [0, 0, 0]
    assert all(d.metadata["requested_amount"] == 5 for d in debits)
    assert ledger.check_quota(user.id, "VIP")["can_use"] is True
    assert TransactionService.check_ledger() == []


def test_signals_fire_after_commit_once_per_row(user, credits, make_offer,
                                                django_capture_on_commit_callbacks):
    created, consumed = [], []

    def on_created(sender, transaction, **kwargs):
        created.append(transaction)

    def on_consumed(sender, usage, **kwargs):
        consumed.append(usage)

    transaction_created.connect(on_created)
    quota_consumed.connect(on_consumed)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            TransactionService.grant_offer(user.id, make_offer(items=[(credits, 2)]))
            TransactionService.grant_offer(user.id, make_offer(items=[(credits, 2)]))
            TransactionService.consume_quota(user.id, "CREDITS", amount=3)
            assert created == [] and consumed == []
        assert [t.direction for t in created] == ["CREDIT", "CREDIT", "DEBIT", "DEBIT"]
        assert [u.amount for u in consumed] == [2, 1]
        assert all(isinstance(u, Transaction) for u in consumed)
    finally:
        transaction_created.disconnect(on_created)
        quota_consumed.disconnect(on_consumed)


def test_no_signal_when_the_outer_transaction_rolls_back(user, credits,
                                                          django_capture_on_commit_callbacks):
    make_batch(user, credits, 5)
    with django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            TransactionService.consume_quota(user.id, "CREDITS")
            raise RuntimeError("host code failed")
    assert callbacks == []
    assert TransactionService.get_balance(user.id, "CREDITS") == 5


@pytest.mark.parametrize("metadata", [["not", "a", "dict"], {"when": Decimal("1.5")}, "x"])
def test_metadata_must_be_a_json_object(user, credits, metadata):
    make_batch(user, credits, 10)
    before = ledger_rows()
    with pytest.raises(InvalidInput):
        TransactionService.consume_quota(user.id, "CREDITS", metadata=metadata)
    assert ledger_rows() == before


def test_hot_path_sql_applies_the_same_rule_as_the_orm(user, make_user, credits, make_product):
    from django.db.models import Sum
    from django.utils import timezone

    other = make_user()
    make_batch(user, credits, 4, age_days=3)
    make_batch(user, credits, 5, age_days=3, expires_in_days=-1)
    make_batch(user, credits, 6, valid_in_days=1)
    make_batch(user, credits, 7, expires_in_days=2)
    exhausted = make_batch(user, credits, 8)
    QuotaBatch.objects.filter(pk=exhausted.pk).update(state="EXHAUSTED")
    make_batch(other, credits, 9)
    make_batch(user, make_product("ELSE"), 10)
    orm = QuotaBatch.objects.spendable(timezone.now()).filter(
        user=user, product=credits).aggregate(t=Sum("remaining_quantity"))["t"]
    assert orm == 11
    assert TransactionService.get_balance(user.id, "credits") == orm
    assert TransactionService.check_quota(user.id, "credits")["remaining"] == orm
