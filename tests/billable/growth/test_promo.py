"""Promo codes: every rule, and every refusal with its stable code (nothing written)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from billable.exceptions import (
    OfferNotFound,
    PromoAlreadyUsed,
    PromoExhausted,
    PromoExpired,
    PromoNotApplicable,
    PromoNotFirstTime,
    PromoUnknown,
)
from billable.growth.promo import PromoService, discounted_price
from billable.ledger.audit import check_ledger
from billable.models import Order, PromoCode, PromoRedemption, QuotaBatch, Transaction
from billable.services import OrderService, TransactionService
from billable.services.customers import CustomerService

pytestmark = pytest.mark.django_db


def balance(user: Any) -> int:
    return TransactionService.get_balance(user.pk, "CREDITS")


def test_grant_code_grants_its_offer_once_and_is_case_insensitive(user, shop, make_code):
    make_code("welcome", offer=shop["free"])
    result = PromoService.redeem("  Welcome ", user_id=user.pk)
    assert balance(user) == 5
    assert result.redemption.status == "redeemed"
    assert Transaction.objects.get(user=user).action_type == "promo"
    with pytest.raises(PromoAlreadyUsed) as caught:
        PromoService.redeem("WELCOME", user_id=user.pk)
    assert caught.value.code == "promo_already_used"
    assert balance(user) == 5
    assert PromoCode.objects.get().uses_count == 1


@pytest.mark.parametrize(("fields", "error", "code"), [
    ({"is_active": False}, PromoExpired, "promo_expired"),
    ({"valid_until": timezone.now() - timedelta(seconds=1)}, PromoExpired, "promo_expired"),
    ({"valid_from": timezone.now() + timedelta(days=1)}, PromoExpired, "promo_expired"),
    ({"max_uses": 1, "uses_count": 1}, PromoExhausted, "promo_exhausted"),
])
def test_code_outside_its_limits_is_refused_and_writes_nothing(user, shop, make_code, fields,
                                                              error, code):
    make_code("SPRING", offer=shop["free"], **fields)
    with pytest.raises(error) as caught:
        PromoService.redeem("spring", user_id=user.pk)
    assert caught.value.code == code
    assert not QuotaBatch.objects.exists()
    assert not PromoRedemption.objects.exists()


def test_unknown_code_is_refused(user, shop):
    for text in ("NOPE", "", "x" * 200, None, 42):
        with pytest.raises(PromoUnknown) as caught:
            PromoService.redeem(text, user_id=user.pk)
        assert caught.value.code == "promo_unknown"


def test_total_uses_are_counted_across_customers(make_user, shop, make_code):
    make_code("TWO", offer=shop["free"], max_uses=2)
    users = [make_user() for _ in range(3)]
    PromoService.redeem("two", user_id=users[0].pk)
    PromoService.redeem("two", user_id=users[1].pk)
    with pytest.raises(PromoExhausted):
        PromoService.redeem("two", user_id=users[2].pk)
    assert PromoCode.objects.get().uses_count == 2


def test_once_per_telegram_identity_across_accounts(make_user, shop, make_code):
    make_code("TG", offer=shop["free"])
    first, second = make_user(), make_user()
    PromoService.redeem("tg", user_id=first.pk, identities={"telegram": 42})
    with pytest.raises(PromoAlreadyUsed):
        PromoService.redeem("tg", user_id=second.pk, identities={"telegram": "42"})


def test_a_code_used_before_a_merge_stays_used_after_it(make_user, shop, make_code):
    from billable.models import ExternalIdentity

    make_code("MERGE", offer=shop["free"])
    target, source = make_user(), make_user()
    ExternalIdentity.objects.create(provider="email", external_id="a@example.com", user=target)
    ExternalIdentity.objects.create(provider="telegram", external_id="200", user=source)
    PromoService.redeem("merge", user_id=source.pk)
    CustomerService.merge_customers(target.pk, source.pk)
    with pytest.raises(PromoAlreadyUsed):
        PromoService.redeem("merge", user_id=target.pk)


def test_unlimited_per_customer_when_once_per_customer_is_off(user, shop, make_code):
    make_code("REPEAT", offer=shop["free"], once_per_customer=False, max_uses=3)
    for _ in range(3):
        PromoService.redeem("repeat", user_id=user.pk)
    assert balance(user) == 15


def test_first_time_only_refuses_a_customer_with_a_paid_order(user, make_user, shop, make_code):
    make_code("FIRST", offer=shop["free"], first_time_only=True)
    order = OrderService.create_order(user.pk, [{"sku": "USD_PACK", "quantity": 1}])
    OrderService.pay_order(order.pk, payment_id="p1")
    with pytest.raises(PromoNotFirstTime) as caught:
        PromoService.redeem("first", user_id=user.pk)
    assert caught.value.code == "promo_not_first_time"
    PromoService.redeem("first", user_id=make_user().pk)


@pytest.mark.parametrize(("kind", "value", "price", "currency", "expected"), [
    ("percent", 20, "50", "XTR", "40"),
    ("percent", 15, "3", "XTR", "3"),        # 2.55 rounds half-up to 3 whole stars
    ("percent", 99, "50", "XTR", "1"),       # 0.5 → 1: never below one star
    ("percent", 100, "50", "XTR", "1"),
    ("fixed", "60", "50", "XTR", "1"),
    ("fixed", "2.50", "9.99", "USD", "7.49"),
    ("percent", 33, "9.99", "USD", "6.69"),
    ("fixed", "20", "9.99", "USD", "0.01"),
])
def test_discounted_price_rules(kind, value, price, currency, expected):
    promo = PromoCode(code="X", kind=kind, **(
        {"percent_off": value} if kind == "percent" else {"amount_off": Decimal(value)}))
    assert discounted_price(promo, Decimal(price), currency) == Decimal(expected)


def test_discount_code_reserves_a_use_and_payment_grants_the_full_offer(
        user, shop, make_code, django_capture_on_commit_callbacks):
    make_code("HALF", kind="percent", percent_off=50, offer=shop["pack"], max_uses=5)
    result = PromoService.redeem("half", user_id=user.pk)
    order = result.order
    assert order is not None and order.total_amount == Decimal("25")
    assert order.items.get().price == Decimal("25")
    assert result.redemption.status == "reserved"
    assert PromoCode.objects.get().uses_count == 1
    with django_capture_on_commit_callbacks(execute=True):
        OrderService.pay_order(order.pk, payment_id="charge-1", payment_method="telegram_stars")
    assert balance(user) == 10
    assert PromoRedemption.objects.get().status == "redeemed"
    assert check_ledger() == []


def test_discount_for_any_offer_needs_an_applicable_sku(user, shop, make_code):
    make_code("ANY", kind="fixed", amount_off=Decimal("1"), currency="USD")
    with pytest.raises(PromoNotApplicable):
        PromoService.redeem("any", user_id=user.pk)
    with pytest.raises(PromoNotApplicable):
        PromoService.redeem("any", user_id=user.pk, sku="PACK_10")  # XTR, not USD
    with pytest.raises(OfferNotFound):
        PromoService.redeem("any", user_id=user.pk, sku="NOPE")
    order = PromoService.redeem("any", user_id=user.pk, sku="usd_pack").order
    assert order is not None and order.total_amount == Decimal("8.99")


def test_unpaid_discounted_order_gives_its_use_back_after_the_ttl(user, shop, make_code):
    make_code("ONE", kind="percent", percent_off=10, offer=shop["pack"], max_uses=1)
    order = PromoService.redeem("one", user_id=user.pk).order
    assert order is not None
    assert PromoService.check_reservation(
        PromoRedemption.objects.get().pk, order_id=order.pk) is None
    assert PromoService.release_stale(older_than=3600) == 0
    assert PromoService.release_stale(older_than=0) == 1
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert PromoCode.objects.get().uses_count == 0
    assert PromoService.check_reservation(
        PromoRedemption.objects.get().pk, order_id=order.pk) == "promo_expired"
    PromoService.redeem("one", user_id=user.pk)  # the use (and the customer's right) is back


def test_sweep_settles_a_paid_reservation_whose_receiver_did_not_run(user, shop, make_code):
    from billable.models import Order as OrderModel

    make_code("LATE", kind="percent", percent_off=10, offer=shop["pack"])
    order = PromoService.redeem("late", user_id=user.pk).order
    assert order is not None
    OrderModel.objects.filter(pk=order.pk).update(status="paid", payment_id="x")
    assert PromoService.release_stale(older_than=0) == 0
    assert PromoRedemption.objects.get().status == "redeemed"


def test_quote_checks_without_writing(user, shop, make_code):
    make_code("Q", kind="percent", percent_off=20, offer=shop["pack"])
    quote = PromoService.quote("q", user_id=user.pk)
    assert (quote.list_price, quote.price, quote.discount) == (Decimal("50"), Decimal("40"),
                                                               Decimal("10"))
    assert not PromoRedemption.objects.exists()


def test_bulk_generation_and_csv(shop):
    from billable.growth.codes import ALPHABET, codes_csv, generate_codes

    codes = generate_codes(25, prefix="xmas-", length=8, batch="xmas", offer=shop["free"],
                           max_uses=1)
    assert len({c.code for c in codes}) == 25 == PromoCode.objects.filter(batch="xmas").count()
    assert all(c.code.startswith("XMAS-") and set(c.code[5:]) <= set(ALPHABET) for c in codes)
    text = codes_csv(PromoCode.objects.filter(batch="xmas").select_related("offer"))
    lines = text.strip().splitlines()
    assert lines[0].startswith("code,kind,offer") and len(lines) == 26
    assert ",FREE_5," in lines[1]


async def test_async_twins(user, shop, make_code):
    from asgiref.sync import sync_to_async

    await sync_to_async(make_code)("ASYNC", offer=shop["free"])
    quote = await PromoService.aquote("async", user_id=user.pk)
    assert quote.offer.sku == "FREE_5"
    result = await PromoService.aredeem("async", user_id=user.pk)
    assert len(result.batches) == 1


def test_promo_codes_command_generates_and_exports(shop):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("billable_promo_codes", "5", "--offer", "free_5", "--max-uses", "1",
                 "--batch", "cmd", stdout=out, stderr=StringIO())
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 6 and PromoCode.objects.filter(batch="cmd", max_uses=1).count() == 5
    exported = StringIO()
    call_command("billable_promo_codes", "--export", "cmd", stdout=exported)
    assert exported.getvalue().strip().splitlines()[1:] != [] and len(
        exported.getvalue().strip().splitlines()) == 6
    with pytest.raises(CommandError):
        call_command("billable_promo_codes", "3", stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError):
        call_command("billable_promo_codes", "3", "--offer", "NOPE", stdout=StringIO())


def test_sweep_and_alert_commands_run(user, shop):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("billable_growth_sweep", stdout=out)
    assert out.getvalue().startswith("Released promo uses: 0. Expired gifts: 0.")
    out = StringIO()
    call_command("billable_alerts", stdout=out)
    assert out.getvalue().startswith("Low balance: 0. Expiring: 0.")


@pytest.mark.parametrize(("sku", "error", "code"), [
    ("PACK_10", PromoNotApplicable, "promo_not_applicable"),  # another offer
    ("NO_SUCH_SKU", OfferNotFound, "offer_not_found"),  # looked up first, as for discounts
])
def test_grant_code_refuses_a_sku_that_is_not_its_offer(user, shop, make_code, sku, error,
                                                        code):
    make_code("WELCOME", offer=shop["free"])
    for call in (PromoService.quote, PromoService.redeem):
        with pytest.raises(error) as caught:
            call("welcome", user_id=user.pk, sku=sku)
        assert caught.value.code == code
    assert not QuotaBatch.objects.exists() and not PromoRedemption.objects.exists()
    assert PromoCode.objects.get().uses_count == 0


@pytest.mark.parametrize("sku", ["FREE_5", " FREE_5 ", None, ""])
def test_grant_code_with_its_own_sku_or_none_grants(user, shop, make_code, sku):
    make_code("WELCOME", offer=shop["free"])
    assert PromoService.quote("welcome", sku=sku).offer == shop["free"]
    PromoService.redeem("welcome", user_id=user.pk, sku=sku)
    assert balance(user) == 5


def test_grant_code_sku_refusals_over_rest(shop, make_code):
    from tests.billable.api.peer_support import Peer

    make_code("API-WELCOME", offer=shop["free"])
    peer = Peer()
    body = {"provider": "telegram", "external_id": "777", "code": "api-welcome"}
    for sku, status, code in [("PACK_10", 400, "promo_not_applicable"),
                              ("NO_SUCH_SKU", 404, "offer_not_found")]:
        answer = peer.post("/promo/redeem", {**body, "sku": sku})
        assert (answer.status, answer.body["data"]["error"]) == (status, code), answer.text
    assert not QuotaBatch.objects.exists()
    answer = peer.post("/promo/redeem", {**body, "sku": "FREE_5"})
    assert answer.status == 200 and answer.body["data"]["sku"] == "FREE_5", answer.text
