"""Peer acceptance suite, SPEC §1–3: package surface, settings, data model.

Written from the contract only (see ``peer_support``): public imports, public results.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from billable.exceptions import BillableError
from tests.billable.peer_support import MODES, call

pytestmark = pytest.mark.django_db


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


# -- §1 import policy and package surface ----------------------------------------------------


def test_root_package_imports_without_django_and_exposes_only_version() -> None:
    code = (
        "import sys, billable\n"
        "assert isinstance(billable.__version__, str)\n"
        "assert 'billable.models' not in sys.modules, 'models imported'\n"
        "assert 'django.db.models' not in sys.modules, 'django models imported'\n"
        "assert [n for n in vars(billable) if not n.startswith('_')] == [], vars(billable)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr


def test_models_module_exports_the_published_names() -> None:
    from django.contrib.auth import get_user_model

    import billable.models as models

    for name in ("Product", "Offer", "OfferItem", "QuotaBatch", "Transaction", "Order",
                 "OrderItem", "TrialHistory", "ExternalIdentity", "Referral", "Customer"):
        assert hasattr(models, name), name
    assert models.Customer._meta.proxy
    assert models.Customer._meta.concrete_model is get_user_model()


def test_services_are_classmethod_facades_with_async_twins() -> None:
    from billable import services

    expected = {
        "TransactionService": ["check_quota", "get_balance", "grant_offer", "consume_quota",
                               "exchange", "reserve_quota", "commit_reservation",
                               "release_reservation", "revoke_order_items"],
        "BalanceService": ["get_user_active_products", "get_balance_summary"],
        "OrderService": ["create_order", "process_payment", "cancel_order", "refund_order"],
        "CustomerService": ["merge_customers"],
        "ProductService": ["get_active_products", "get_product_by_key"],
    }
    for cls_name, methods in expected.items():
        facade = getattr(services, cls_name)
        assert inspect.isclass(facade)
        for name in methods:
            assert inspect.ismethod(getattr(facade, name)), f"{cls_name}.{name}"
            twin = getattr(facade, "a" + name)
            assert inspect.iscoroutinefunction(twin), f"{cls_name}.a{name}"
    assert inspect.iscoroutinefunction(services.OrderService.aserialize_order_to_dict)
    assert callable(services.TransactionService.expire_batches)
    assert callable(services.ProductService.get_trial_products)
    assert callable(services.BalanceService.deactivate_expired_products)


def test_api_router_and_urls_surface() -> None:
    from ninja import NinjaAPI, Router

    from billable.api import router
    from billable.urls import api

    assert isinstance(router, Router)
    assert router.auth is not None and router.auth is not ...
    assert isinstance(api, NinjaAPI)


def test_signals_module_exports_the_published_signals() -> None:
    from django.dispatch import Signal

    from billable import signals

    for name in ("order_confirmed", "transaction_created", "quota_consumed", "trial_activated",
                 "referral_attached", "customers_merged"):
        assert isinstance(getattr(signals, name), Signal), name


def test_migrate_identities_command_exists() -> None:
    from django.core.management import get_commands

    assert get_commands().get("migrate_identities") == "billable"


# -- §2 settings --------------------------------------------------------------------------------


def test_settings_defaults(settings) -> None:
    from billable.conf import billable_settings

    for name in ("BILLABLE_API_TOKEN", "BILLABLE_SHOW_DOCS", "BILLABLE_API_TITLE",
                 "BILLABLE_CURRENCY", "BILLABLE_CONSUMPTION_ORDER"):
        if hasattr(settings, name):
            delattr(settings, name)
    assert billable_settings.BILLABLE_API_TOKEN is None
    assert billable_settings.BILLABLE_SHOW_DOCS is True
    assert billable_settings.BILLABLE_API_TITLE == "Billable Engine API"
    assert billable_settings.BILLABLE_CURRENCY == "USD"
    assert billable_settings.BILLABLE_CONSUMPTION_ORDER == "fifo"


def test_settings_are_lazy_under_override(settings) -> None:
    from billable.conf import billable_settings

    settings.BILLABLE_CURRENCY = "EUR"
    assert billable_settings.BILLABLE_CURRENCY == "EUR"
    settings.BILLABLE_CURRENCY = "XTR"
    assert billable_settings.BILLABLE_CURRENCY == "XTR"


def test_default_currency_applies_to_offers_created_without_one(settings) -> None:
    from billable.models import Offer

    settings.BILLABLE_CURRENCY = "EUR"
    offer = Offer.objects.create(sku="peer_cur_default", name="x", price=Decimal("1"))
    assert offer.currency == "EUR"


def test_system_checks_flag_misconfiguration(settings) -> None:
    settings.BILLABLE_USER_MODEL = "custom.User"
    settings.BILLABLE_CONSUMPTION_ORDER = "random"
    ids = {m.id for m in run_checks()}
    assert "billable.W003" in ids
    assert any(i and i.startswith("billable.E") for i in ids)
    settings.BILLABLE_API_TOKEN = None
    assert any(m.id and m.id.startswith("billable.W") for m in run_checks())


def test_user_model_setting_equal_to_auth_user_model_is_silent(settings) -> None:
    settings.BILLABLE_USER_MODEL = settings.AUTH_USER_MODEL
    assert "billable.W003" not in {m.id for m in run_checks()}


# -- §3 tables ------------------------------------------------------------------------------------


def test_table_names() -> None:
    from billable import models as m

    expected = {m.Product: "billable_products", m.Offer: "billable_offers",
                m.OfferItem: "billable_offer_items", m.QuotaBatch: "billable_quota_batches",
                m.Transaction: "billable_transactions", m.Order: "billable_orders",
                m.OrderItem: "billable_order_items", m.TrialHistory: "billable_trial_history",
                m.ExternalIdentity: "billable_external_identities",
                m.Referral: "billable_referrals"}
    for model, table in expected.items():
        assert model._meta.db_table == table


def test_no_seeded_catalog_in_a_fresh_database() -> None:
    from billable.models import Offer, Product

    assert Product.objects.count() == 0
    assert Offer.objects.count() == 0


def test_offer_currency_holds_a_product_key_length_value(make_product) -> None:
    from billable.models import Offer

    key = "C" * 50
    make_product(key, is_currency=True)
    offer = Offer.objects.create(sku="peer_long_cur", name="x", price=Decimal("5"), currency=key)
    offer.refresh_from_db()
    assert offer.currency == key


# -- §3 CAPS normalisation ------------------------------------------------------------------------


def test_product_key_and_sku_are_stored_upper_case(make_product) -> None:
    from billable.models import Offer, Product

    product = Product.objects.create(product_key="gold", name="Gold", product_type="quantity")
    offer = Offer.objects.create(sku="gold_100", name="Gold 100", price=Decimal("1"))
    product.refresh_from_db()
    offer.refresh_from_db()
    assert product.product_key == "GOLD"
    assert offer.sku == "GOLD_100"
    product.product_key = "silver"
    product.save()
    offer.sku = "silver_100"
    offer.save()
    assert Product.objects.filter(product_key="SILVER").exists()
    assert Offer.objects.filter(sku="SILVER_100").exists()


def test_bulk_create_normalises_too() -> None:
    from billable.models import Offer, Product

    Product.objects.bulk_create([Product(product_key="bulk_p", name="B")])
    Offer.objects.bulk_create([Offer(sku="bulk_o", name="B", price=Decimal("1"))])
    assert Product.objects.get(product_key="BULK_P").product_key == "BULK_P"
    assert list(Offer.objects.values_list("sku", flat=True)) == ["BULK_O"]


def test_lookups_across_relations_ignore_case(user, make_product, make_offer) -> None:
    from billable.models import OfferItem, Order, OrderItem, QuotaBatch, Transaction
    from billable.services import OrderService

    product = make_product("REL_P")
    offer = make_offer("REL_O", items=[(product, 2)], price="1")
    order = OrderService.create_order(user.id, [{"sku": "rel_o"}])
    OrderService.process_payment(order.pk, payment_id="rel")
    assert OfferItem.objects.filter(offer__sku="rel_o", product__product_key="rel_p").count() == 1
    assert OrderItem.objects.filter(offer__sku="Rel_O").count() == 1
    assert Order.objects.filter(items__offer__sku="rel_o").get() == order
    assert QuotaBatch.objects.filter(product__product_key="rel_p").count() == 1
    assert Transaction.objects.filter(quota_batch__product__product_key="rel_p").count() == 1
    assert offer.items.filter(product__product_key="rel_p").exists()


def test_default_managers_look_up_in_any_case(make_product, make_offer) -> None:
    from billable.models import Offer, Product

    product = make_product("GOLD")
    offer = make_offer("GOLD_100", items=[(product, 100)])
    assert Product.objects.get(product_key="gold") == product
    assert Product.objects.filter(product_key="GoLd").get() == product
    assert Offer.objects.get(sku="gold_100") == offer
    assert list(Offer.objects.filter(sku="Gold_100")) == [offer]
    assert Offer.objects.filter(sku__in=["gold_100"]).count() == 1
    assert Offer.objects.filter(sku__in=(s for s in ["gold_100"])).count() == 1
    assert Offer.objects.filter(sku__in={"gold_100": 1}.keys()).count() == 1
    assert Product.objects.filter(product_key__startswith="go").get() == product
    assert Offer.objects.exclude(sku="gold_100").count() == 0
    assert Offer.objects.filter(items__product__product_key="gold").get() == offer
    same, created = Offer.objects.get_or_create(sku="gold_100", defaults={"name": "x",
                                                                          "price": 1})
    assert (same, created) == (offer, False)
    same_p, created_p = Product.objects.get_or_create(product_key="gold")
    assert (same_p, created_p) == (product, False)
    new, created_new = Offer.objects.get_or_create(sku="gold_200", defaults={"name": "x",
                                                                             "price": 1})
    assert created_new and new.sku == "GOLD_200"
    obj, created_uoc = Offer.objects.update_or_create(sku="gold_200",
                                                      defaults={"name": "renamed"})
    assert not created_uoc and obj.pk == new.pk


async def test_async_manager_lookups_in_any_case(make_product, make_offer) -> None:
    from asgiref.sync import sync_to_async

    from billable.models import Offer, Product

    product = await sync_to_async(make_product)("ASYNC_P")
    offer = await sync_to_async(make_offer)("ASYNC_O", items=[(product, 1)])
    assert await Offer.objects.aget(sku="async_o") == offer
    assert await Product.objects.aget(product_key="async_p") == product
    assert await Offer.objects.filter(sku="Async_O").aexists()
    got, created = await Offer.objects.aget_or_create(sku="async_o",
                                                      defaults={"name": "x", "price": 1})
    assert (got, created) == (offer, False)


# -- §3 shared namespace ------------------------------------------------------------------------


def test_offer_sku_may_not_equal_a_product_key(make_product) -> None:
    from billable.models import Offer

    make_product("GOLD_100")
    with pytest.raises(ValidationError) as caught:
        Offer.objects.create(sku="gold_100", name="x", price=Decimal("1"))
    assert caught.value.message_dict == {
        "sku": ["Conflict: 'GOLD_100' is already used as a Product Key."]}


def test_product_key_may_not_equal_an_sku(make_offer) -> None:
    from billable.models import Product

    make_offer("GOLD_100")
    with pytest.raises(ValidationError) as caught:
        Product.objects.create(product_key="Gold_100", name="x")
    assert caught.value.message_dict == {
        "product_key": ["Conflict: 'GOLD_100' is already used as an Offer SKU."]}


def test_namespace_enforced_on_bulk_update_and_get_or_create(make_product, make_offer) -> None:
    from billable.models import Offer, Product

    make_product("TAKEN_KEY")
    make_offer("TAKEN_SKU")
    with pytest.raises(ValidationError):
        Offer.objects.bulk_create([Offer(sku="taken_key", name="x", price=1)])
    with pytest.raises(ValidationError):
        Product.objects.bulk_create([Product(product_key="taken_sku", name="x")])
    with pytest.raises(ValidationError):
        Offer.objects.get_or_create(sku="taken_key", defaults={"name": "x", "price": 1})
    with pytest.raises(ValidationError):
        Offer.objects.filter(sku="TAKEN_SKU").update(sku="taken_key")
    with pytest.raises(ValidationError):
        Product.objects.filter(product_key="TAKEN_KEY").update(product_key="taken_sku")
    product = Product.objects.get(product_key="taken_key")
    product.product_key = "taken_sku"
    with pytest.raises(ValidationError):
        product.save()
    assert Product.objects.filter(product_key="TAKEN_KEY").exists()
    assert Offer.objects.filter(sku="TAKEN_SKU").exists()
    assert not Offer.objects.filter(sku="TAKEN_KEY").exists()


def test_namespace_in_full_clean(make_product) -> None:
    from billable.models import Offer

    make_product("CLEAN_KEY")
    with pytest.raises(ValidationError) as caught:
        Offer(sku="clean_key", name="x", price=Decimal("1"), currency="USD").full_clean()
    assert "sku" in caught.value.message_dict


# -- §3 field constraints -----------------------------------------------------------------------


def test_negative_offer_price_is_refused() -> None:
    from billable.models import Offer

    with pytest.raises(ValidationError):
        Offer(sku="neg", name="x", price=Decimal("-1"), currency="USD").full_clean()
    with pytest.raises((ValidationError, IntegrityError)), transaction.atomic():
        Offer.objects.create(sku="neg", name="x", price=Decimal("-1"))


def test_offer_price_is_required() -> None:
    from billable.models import Offer

    with pytest.raises(ValidationError) as caught:
        Offer.objects.create(sku="no_price", name="x", price=None)
    assert set(caught.value.message_dict) == {"price"}


def test_offer_item_period_unit_must_be_a_choice(make_product, make_offer) -> None:
    from billable.models import OfferItem

    product, offer = make_product("UNIT_P"), make_offer("UNIT_O")
    with pytest.raises(ValidationError) as caught:
        OfferItem.objects.create(offer=offer, product=product, quantity=1, period_unit="weeks",
                                 period_value=1)
    assert set(caught.value.message_dict) == {"period_unit"}
    for unit in ("hours", "days", "months", "years", "forever"):
        OfferItem.objects.create(offer=offer, product=product, quantity=1, period_unit=unit,
                                 period_value=None if unit == "forever" else 1)


def test_offer_item_quantity_must_be_positive(make_product, make_offer) -> None:
    from billable.models import OfferItem

    product = make_product("QTY_P")
    offer = make_offer("QTY_O")
    with pytest.raises((ValidationError, IntegrityError)), transaction.atomic():
        OfferItem.objects.create(offer=offer, product=product, quantity=0)
    item = OfferItem.objects.create(offer=offer, product=product, quantity=3)
    assert item.period_unit == "forever"
    assert list(offer.items.all()) == [item]

def test_quota_batch_defaults_and_explicit_created_at(user, make_product) -> None:
    from billable.models import QuotaBatch

    product = make_product("DEF")
    before = timezone.now()
    batch = QuotaBatch.objects.create(user=user, product=product, initial_quantity=1,
                                      remaining_quantity=1)
    assert batch.state == "ACTIVE"
    assert before <= batch.valid_from <= timezone.now()
    assert batch.expires_at is None
    assert len(str(batch.id)) == 36
    past = timezone.now() - timedelta(days=400)
    old = QuotaBatch.objects.create(user=user, product=product, initial_quantity=1,
                                    remaining_quantity=1, created_at=past)
    old.refresh_from_db()
    assert old.created_at == past
    assert set(user.quota_batches.all()) == {batch, old}


def test_order_payment_id_unique_per_method_when_set(user) -> None:
    from billable.models import Order

    Order.objects.create(user=user, total_amount=Decimal("1"), currency="USD",
                         payment_method="stripe", payment_id="ch_1")
    Order.objects.create(user=user, total_amount=Decimal("1"), currency="USD",
                         payment_method="stripe", payment_id=None)
    Order.objects.create(user=user, total_amount=Decimal("1"), currency="USD",
                         payment_method="stripe", payment_id=None)
    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.create(user=user, total_amount=Decimal("1"), currency="USD",
                             payment_method="stripe", payment_id="ch_1")
    assert Order.objects.get(payment_id="ch_1").status == "pending"


def test_offer_with_orders_cannot_be_deleted(user, make_offer) -> None:
    from billable.models import Order, OrderItem

    offer = make_offer("PROT_O")
    order = Order.objects.create(user=user, total_amount=Decimal("1"), currency="USD")
    OrderItem.objects.create(order=order, offer=offer, quantity=1, price=Decimal("1"))
    with pytest.raises(ProtectedError):
        offer.delete()


# -- §3 ledger immutability -----------------------------------------------------------------------


def _granted(user, make_product, make_offer, key="IMM", qty=5):
    from billable.services import TransactionService

    product = make_product(key)
    offer = make_offer(f"{key}_PACK", items=[(product, qty)])
    batches = TransactionService.grant_offer(user.id, offer)
    return product, offer, batches


def test_ledger_rows_refuse_update_and_delete(user, make_product, make_offer) -> None:
    from billable.exceptions import BillableError
    from billable.models import Transaction

    _granted(user, make_product, make_offer)
    row = Transaction.objects.get(user=user)
    row.amount = 500
    with pytest.raises(BillableError) as caught:
        row.save()
    assert caught.value.code == "ledger_immutable"
    with pytest.raises(BillableError):
        row.delete()
    with pytest.raises(BillableError):
        Transaction.objects.filter(pk=row.pk).update(amount=500)
    with pytest.raises(BillableError):
        Transaction.objects.filter(pk=row.pk).delete()
    row.refresh_from_db()
    assert row.amount == 5

# -- §3 spendability -----------------------------------------------------------------------------


def _batch(user, product, qty=5, **fields):
    from billable.models import QuotaBatch

    return QuotaBatch.objects.create(user=user, product=product, initial_quantity=qty,
                                     remaining_quantity=qty, **fields)


@pytest.mark.parametrize("window", ["expired", "not_yet_valid", "revoked", "exhausted"])
def test_unspendable_batches_are_invisible_on_every_reading_path(
        mode, window, user, make_product) -> None:
    from billable.services import BalanceService, TransactionService

    product = make_product("SPEND", name="Spend")
    now = timezone.now()
    fields = {
        "expired": {"expires_at": now - timedelta(seconds=1)},
        "not_yet_valid": {"valid_from": now + timedelta(hours=1)},
        "revoked": {"state": "REVOKED"},
        "exhausted": {"state": "EXHAUSTED"},
    }[window]
    _batch(user, product, **fields)
    assert call(mode, TransactionService, "get_balance", user.id, "spend") == 0
    assert call(mode, TransactionService, "check_quota", user.id, "spend") == {
        "can_use": False, "product_key": "SPEND", "remaining": 0,
        "message": "No active quota for SPEND"}
    assert list(call(mode, BalanceService, "get_user_active_products", user.id)) == []
    summary = call(mode, BalanceService, "get_balance_summary", user.id)
    assert summary.get("SPEND", {"remaining": 0})["remaining"] == 0
    result = call(mode, TransactionService, "consume_quota", user.id, "spend")
    assert result == {"success": False, "error": "quota_exhausted",
                      "message": "No active quota for SPEND"}


def test_batch_becomes_spendable_at_valid_from(user, make_product) -> None:
    from billable.services import TransactionService

    product = make_product("LATER")
    _batch(user, product, valid_from=timezone.now() - timedelta(seconds=1))
    assert TransactionService.get_balance(user.id, "LATER") == 5


# -- §3 product types ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["period", "unlimited"])
def test_entitlements_are_never_depleted(mode, kind, user, make_product, make_offer) -> None:
    from billable.models import Transaction
    from billable.services import TransactionService

    product = make_product("ENT", name="Ent", product_type=kind)
    offer = make_offer("ENT_PACK", items=[(product, 1, "days", 30)])
    TransactionService.grant_offer(user.id, offer)
    for _ in range(3):
        result = call(mode, TransactionService, "consume_quota", user.id, "ent")
        assert result["success"] is True, result
    assert call(mode, TransactionService, "check_quota", user.id, "ENT")["can_use"] is True
    usage = Transaction.objects.filter(user=user, direction="DEBIT", action_type="usage")
    assert [row.amount for row in usage] == [0, 0, 0]
    assert TransactionService.check_ledger(user.id) == []


def test_buying_a_running_period_extends_it(user, make_product, make_offer) -> None:
    from billable.services import TransactionService

    product = make_product("SUB", product_type="period")
    offer = make_offer("SUB_30", items=[(product, 1, "days", 30)])
    start = timezone.now()
    [first] = TransactionService.grant_offer(user.id, offer)
    [second] = TransactionService.grant_offer(user.id, offer)
    assert first.expires_at - start >= timedelta(days=30) - timedelta(minutes=1)
    assert second.valid_from == first.expires_at
    assert second.expires_at - first.valid_from == timedelta(days=60)
    # documented in docs/reference.md: the summary reads spendable batches only
    from billable.services import BalanceService

    summary = BalanceService.get_balance_summary(user.id)["SUB"]
    assert summary["expiry"] == first.expires_at and summary["is_unlimited"] is True
    assert TransactionService.check_quota(user.id, "sub")["can_use"] is True


def test_quantity_product_counts_down(user, make_product, make_offer) -> None:
    from billable.services import TransactionService

    product = make_product("CNT")
    TransactionService.grant_offer(user.id, make_offer("CNT_3", items=[(product, 3)]))
    TransactionService.consume_quota(user.id, "cnt", amount=2)
    assert TransactionService.get_balance(user.id, "cnt") == 1


# -- §3 TrialHistory, ExternalIdentity, Referral --------------------------------------------------


def test_trial_identity_hash() -> None:
    from billable.models import TrialHistory

    assert TrialHistory.generate_identity_hash("  ABC ") == hashlib.sha256(b"abc").hexdigest()
    assert TrialHistory.generate_identity_hash(12345) == hashlib.sha256(b"12345").hexdigest()
    # SPEC "(\"\" for None)": the published package returns an empty hash, not sha256("").
    assert TrialHistory.generate_identity_hash(None) == ""


def test_has_used_trial(mode) -> None:
    from billable.models import TrialHistory

    def used(*args, **kwargs):
        if mode == "sync":
            return TrialHistory.has_used_trial(*args, **kwargs)
        from asgiref.sync import async_to_sync

        return async_to_sync(TrialHistory.ahas_used_trial)(*args, **kwargs)

    TrialHistory.objects.create(identity_type="telegram",
                                identity_hash=TrialHistory.generate_identity_hash("777"),
                                trial_plan_name="Welcome")
    TrialHistory.objects.create(identity_type="hh",
                                identity_hash=TrialHistory.generate_identity_hash("HH1"),
                                trial_plan_name="Welcome")
    assert used() is False
    assert used(identities={}) is False
    assert used(telegram_id=None, hh_id="") is False
    assert used(telegram_id=777) is True
    assert used(hh_id="hh1") is True
    assert used(identities={"telegram": " 777 "}) is True
    assert used(identities={"telegram": "778", "email": None}) is False
    for bad in ([("telegram", "777")], "777", 777):
        with pytest.raises(BillableError) as caught:
            used(identities=bad)
        assert caught.value.code == "invalid_input"
    with pytest.raises(IntegrityError), transaction.atomic():
        TrialHistory.objects.create(identity_type="telegram",
                                    identity_hash=TrialHistory.generate_identity_hash("777"),
                                    trial_plan_name="Again")


def test_external_identity_lookups(mode, make_user) -> None:
    from asgiref.sync import async_to_sync

    from billable.models import ExternalIdentity

    def run(name, *args, **kwargs):
        if mode == "sync":
            return getattr(ExternalIdentity, name)(*args, **kwargs)
        return async_to_sync(getattr(ExternalIdentity, "a" + name))(*args, **kwargs)

    alice = make_user()
    old = ExternalIdentity.objects.create(external_id="100", user=alice)
    ExternalIdentity.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(1))
    ExternalIdentity.objects.create(external_id="200", user=alice)
    ExternalIdentity.objects.create(external_id="tg1", provider="telegram", user=alice)
    assert old.provider == "default"
    assert run("get_user_by_identity", "100") == alice
    assert run("get_user_by_identity", "tg1", provider="telegram") == alice
    assert run("get_user_by_identity", "tg1") is None
    assert run("get_user_by_identity", "missing") is None
    assert run("get_external_id_for_user", alice) == "100"
    assert run("get_external_id_for_user", alice, provider="telegram") == "tg1"
    assert run("get_external_id_for_user", alice, provider="none") is None
    assert alice.billable_external_identities.count() == 3
    for bad in ("a\x00b", None, ""):
        assert run("get_user_by_identity", bad) is None
    assert run("get_user_by_identity", "100", provider="x\x00") is None
    assert run("get_external_id_for_user", str(alice.pk)) == "100"
    for bad in (None, "abc", 2**40, 2**70, 1.5, "1\x00"):
        assert run("get_external_id_for_user", bad) is None
    with pytest.raises(IntegrityError), transaction.atomic():
        ExternalIdentity.objects.create(external_id="100", user=make_user())


def test_referral_rules_and_claim_bonus(make_user) -> None:
    from billable.models import Referral

    a, b, c = make_user(), make_user(), make_user()
    referral = Referral.objects.create(referrer=a, referee=b)
    text = str(referral)
    assert str(a.id) in text and str(b.id) in text and "✗" in text
    assert referral.claim_bonus() is True
    assert referral.claim_bonus() is False
    assert Referral.objects.get(pk=referral.pk).claim_bonus() is False
    referral.refresh_from_db()
    assert referral.bonus_granted and referral.bonus_granted_at is not None
    assert "✓" in str(referral)
    assert list(a.referrals_made.all()) == [referral]
    assert list(b.referrals_received.all()) == [referral]
    with pytest.raises((IntegrityError, ValidationError)), transaction.atomic():
        Referral.objects.create(referrer=c, referee=c)
    with pytest.raises((IntegrityError, ValidationError)), transaction.atomic():
        Referral.objects.create(referrer=c, referee=b)
    with pytest.raises((IntegrityError, ValidationError)), transaction.atomic():
        Referral.objects.create(referrer=a, referee=b)
