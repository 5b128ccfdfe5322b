"""Peer acceptance suite (black box) for promo codes, written from docs/growth.md and SPEC only.

Money and bad input first: every documented refusal has its stable code and writes nothing;
hostile input gets a ``billable`` error, never a raw database error; the ledger check passes
after every failure.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from billable.exceptions import (
    BillableError,
    OrderStateError,
    PromoAlreadyUsed,
    PromoExhausted,
    PromoExpired,
    PromoNotApplicable,
    PromoNotFirstTime,
)
from billable.growth.promo import PromoService
from billable.models import (
    ExternalIdentity,
    Order,
    PromoCode,
    PromoRedemption,
    QuotaBatch,
    Transaction,
)
from billable.services import CustomerService, OrderService, TransactionService
from billable.signals import promo_redeemed
from tests.helpers import requires_postgres, run_in_threads

pytestmark = pytest.mark.django_db

Shop = dict[str, Any]


def snapshot() -> tuple[int, int, int, int]:
    """Rows that a refused redemption must not add."""
    return (Transaction.objects.count(), QuotaBatch.objects.count(),
            PromoRedemption.objects.count(), Order.objects.count())


def assert_ledger_consistent() -> None:
    assert TransactionService.check_ledger() == []


@pytest.fixture
def redeemed() -> Any:
    got: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        got.append(kwargs)

    promo_redeemed.connect(receiver, dispatch_uid="peer2-promo-redeemed")
    yield got
    promo_redeemed.disconnect(dispatch_uid="peer2-promo-redeemed")


# --- grant codes -------------------------------------------------------------------------------


def test_grant_code_grants_once_case_insensitively(shop: Shop, make_code: Callable[..., Any],
                                                   user: Any, redeemed: list[Any],
                                                   django_capture_on_commit_callbacks: Any
                                                   ) -> None:
    make_code("hello2026", offer=shop["free"], max_uses=10)
    with django_capture_on_commit_callbacks(execute=True):
        result = PromoService.redeem("Hello2026", user_id=user.pk)
    assert result.redemption.status == "redeemed"
    assert TransactionService.get_balance(user.pk, "credits") == 5
    credit = Transaction.objects.get(user=user)
    assert (credit.direction, credit.action_type, credit.amount) == ("CREDIT", "promo", 5)
    assert PromoCode.objects.get().code == "HELLO2026"
    assert PromoCode.objects.get().uses_count == 1
    assert [r["code"] for r in redeemed] == ["HELLO2026"]
    assert redeemed[0]["user_id"] == user.pk

    before = snapshot()
    with pytest.raises(PromoAlreadyUsed) as caught:
        PromoService.redeem("HELLO2026", user_id=user.pk)
    assert caught.value.code == "promo_already_used"
    assert snapshot() == before
    assert PromoCode.objects.get().uses_count == 1
    assert_ledger_consistent()


@pytest.mark.parametrize("field, value, error", [
    ("is_active", False, PromoExpired),
    ("valid_from", timedelta(hours=1), PromoExpired),
    ("valid_until", timedelta(seconds=-1), PromoExpired),
])
def test_code_outside_its_window_is_refused(shop: Shop, make_code: Callable[..., Any], user: Any,
                                            field: str, value: Any, error: type) -> None:
    if isinstance(value, timedelta):
        value = timezone.now() + value
    make_code("WINDOW", offer=shop["free"], **{field: value})
    before = snapshot()
    with pytest.raises(error) as caught:
        PromoService.redeem("window", user_id=user.pk)
    assert caught.value.code == "promo_expired"
    assert snapshot() == before
    with pytest.raises(error):
        PromoService.quote("window", user_id=user.pk)


def test_exhausted_code_is_refused_and_writes_nothing(shop: Shop, make_code: Callable[..., Any],
                                                      make_user: Callable[..., Any]) -> None:
    make_code("ONE", offer=shop["free"], max_uses=1)
    PromoService.redeem("ONE", user_id=make_user().pk)
    before = snapshot()
    with pytest.raises(PromoExhausted) as caught:
        PromoService.redeem("ONE", user_id=make_user().pk)
    assert caught.value.code == "promo_exhausted"
    assert snapshot() == before
    assert PromoCode.objects.get().uses_count == 1
    assert_ledger_consistent()


def test_identity_held_by_the_account_counts_without_being_named(
        shop: Shop, make_code: Callable[..., Any], make_user: Callable[..., Any]) -> None:
    make_code("HELD", offer=shop["free"])
    first = make_user()
    ExternalIdentity.objects.create(provider="telegram", external_id="777", user=first)
    PromoService.redeem("HELD", user_id=first.pk)
    second = make_user()
    with pytest.raises(PromoAlreadyUsed):
        PromoService.redeem("HELD", user_id=second.pk, identities={"telegram": 777})


def test_code_used_by_a_merged_customer_without_identities_stays_used(
        shop: Shop, make_code: Callable[..., Any], make_user: Callable[..., Any]) -> None:
    """The source had no external identity: only its ``user:<id>`` row records the use."""
    make_code("MERGE2", offer=shop["free"])
    target, source = make_user(), make_user()
    PromoService.redeem("MERGE2", user_id=source.pk)
    CustomerService.merge_customers(target.pk, source.pk)
    with pytest.raises(PromoAlreadyUsed):
        PromoService.redeem("MERGE2", user_id=target.pk)
    assert TransactionService.get_balance(target.pk, "credits") == 5


@pytest.mark.parametrize("final_status", ["paid", "refunded"])
def test_first_time_only_refuses_a_customer_with_a_paid_or_refunded_order(
        shop: Shop, make_code: Callable[..., Any], user: Any, final_status: str) -> None:
    make_code("FIRST", offer=shop["free"], first_time_only=True)
    order = OrderService.create_order(user.pk, [{"sku": "USD_PACK", "quantity": 1}])
    OrderService.process_payment(order.id, payment_id=f"p-{final_status}",
                                 payment_method="card")
    if final_status == "refunded":
        OrderService.refund_order(order.id)
    before = snapshot()
    with pytest.raises(PromoNotFirstTime) as caught:
        PromoService.redeem("FIRST", user_id=user.pk)
    assert caught.value.code == "promo_not_first_time"
    assert snapshot() == before


def test_first_time_only_accepts_a_customer_with_only_pending_or_cancelled_orders(
        shop: Shop, make_code: Callable[..., Any], user: Any) -> None:
    make_code("FIRST", offer=shop["free"], first_time_only=True)
    OrderService.create_order(user.pk, [{"sku": "USD_PACK", "quantity": 1}])
    cancelled = OrderService.create_order(user.pk, [{"sku": "USD_PACK", "quantity": 1}])
    OrderService.cancel_order(cancelled.id)
    assert PromoService.redeem("FIRST", user_id=user.pk).redemption.status == "redeemed"


# --- discount codes ----------------------------------------------------------------------------


def test_percent_discount_reserves_then_redeems_on_payment(
        shop: Shop, make_code: Callable[..., Any], user: Any, redeemed: list[Any],
        django_capture_on_commit_callbacks: Any) -> None:
    make_code("SPRING20", kind="percent", percent_off=20, offer=shop["pack"], max_uses=5)
    quote = PromoService.quote("spring20", user_id=user.pk)
    assert (quote.list_price, quote.price, quote.discount) == (50, 40, 10)
    assert PromoRedemption.objects.count() == 0  # a quote writes nothing

    with django_capture_on_commit_callbacks(execute=True):
        result = PromoService.redeem("SPRING20", user_id=user.pk)
    assert result.redemption.status == "reserved"
    assert result.order.status == "pending" and result.order.total_amount == Decimal("40")
    assert TransactionService.get_balance(user.pk, "credits") == 0
    assert PromoCode.objects.get().uses_count == 1
    assert redeemed == []

    for _ in range(2):  # a replayed confirmation sends nothing again
        with django_capture_on_commit_callbacks(execute=True):
            OrderService.pay_order(result.order.id, payment_id="ch-1",
                                   payment_method="telegram_stars")
    assert TransactionService.get_balance(user.pk, "credits") == 10
    result.redemption.refresh_from_db()
    assert result.redemption.status == "redeemed"
    assert len(redeemed) == 1
    assert_ledger_consistent()


@pytest.mark.parametrize("fields, sku, expected", [
    ({"kind": "percent", "percent_off": 99}, "PACK_10", (50, 1)),       # 0.5 ⭐ → 1 (half-up)
    ({"kind": "percent", "percent_off": 100}, "PACK_10", (50, 1)),      # never below one unit
    ({"kind": "percent", "percent_off": 33}, "PACK_10", (50, 34)),      # 33.5 → 34
    ({"kind": "percent", "percent_off": 33}, "USD_PACK", (Decimal("9.99"), Decimal("6.69"))),
    ({"kind": "fixed", "amount_off": Decimal("500")}, "PACK_10", (50, 1)),
    ({"kind": "fixed", "amount_off": Decimal("0.995")}, "USD_PACK",
     (Decimal("9.99"), Decimal("8.99"))),
])
def test_discounted_price_rounds_half_up_and_never_below_one_unit(
        shop: Shop, make_code: Callable[..., Any], user: Any, fields: dict[str, Any], sku: str,
        expected: tuple[Any, Any]) -> None:
    make_code("DISC", **fields)
    quote = PromoService.quote("DISC", user_id=user.pk, sku=sku)
    assert (quote.list_price, quote.price) == expected
    assert quote.discount == expected[0] - expected[1]


def test_cancelled_discount_order_gives_the_use_back(shop: Shop, make_code: Callable[..., Any],
                                                     user: Any) -> None:
    make_code("ONCE", kind="percent", percent_off=10, offer=shop["pack"], max_uses=1)
    first = PromoService.redeem("ONCE", user_id=user.pk)
    OrderService.cancel_order(first.order.id)
    call_command("billable_growth_sweep", stdout=_Sink())
    first.redemption.refresh_from_db()
    assert first.redemption.status == "released"
    assert PromoCode.objects.get().uses_count == 0
    second = PromoService.redeem("ONCE", user_id=user.pk)
    assert second.redemption.status == "reserved"
    assert_ledger_consistent()


def test_stale_reservation_is_released_by_the_sweep_and_its_order_cannot_be_paid(
        shop: Shop, make_code: Callable[..., Any], user: Any) -> None:
    make_code("STALE", kind="percent", percent_off=10, offer=shop["pack"], max_uses=1)
    result = PromoService.redeem("STALE", user_id=user.pk)
    with override_settings(BILLABLE_PROMO_RESERVATION_TTL=60):
        call_command("billable_growth_sweep", stdout=_Sink())  # still fresh: kept
        result.redemption.refresh_from_db()
        assert result.redemption.status == "reserved"
        PromoRedemption.objects.filter(pk=result.redemption.pk).update(
            created_at=timezone.now() - timedelta(seconds=61))
        call_command("billable_growth_sweep", stdout=_Sink())
    result.redemption.refresh_from_db()
    assert result.redemption.status == "released"
    assert Order.objects.get(pk=result.order.pk).status == "cancelled"
    assert PromoCode.objects.get().uses_count == 0
    with pytest.raises(OrderStateError):
        OrderService.pay_order(result.order.id, payment_id="late", payment_method="card")
    assert TransactionService.get_balance(user.pk, "credits") == 0
    assert_ledger_consistent()


def test_paid_discount_order_is_not_released_by_the_sweep(shop: Shop,
                                                          make_code: Callable[..., Any],
                                                          user: Any) -> None:
    make_code("PAID", kind="percent", percent_off=10, offer=shop["pack"])
    result = PromoService.redeem("PAID", user_id=user.pk)
    OrderService.pay_order(result.order.id, payment_id="ch-paid", payment_method="card")
    PromoRedemption.objects.filter(pk=result.redemption.pk).update(
        created_at=timezone.now() - timedelta(days=2))
    call_command("billable_growth_sweep", stdout=_Sink())
    result.redemption.refresh_from_db()
    assert result.redemption.status == "redeemed"
    assert PromoCode.objects.get().uses_count == 1


@pytest.mark.parametrize("fields, sku", [
    ({"kind": "percent", "percent_off": 10}, None),                       # no offer named
    ({"kind": "percent", "percent_off": 10}, "FREE_5"),                   # a free offer
    ({"kind": "percent", "percent_off": 10, "offer": "PACK_10"}, "USD_PACK"),  # another offer
    ({"kind": "fixed", "amount_off": Decimal("1"), "currency": "EUR"}, "USD_PACK"),
])
def test_discount_that_does_not_apply_is_refused(shop: Shop, make_code: Callable[..., Any],
                                                 user: Any, fields: dict[str, Any],
                                                 sku: str | None) -> None:
    if "offer" in fields:
        fields["offer"] = shop["pack"] if fields["offer"] == "PACK_10" else None
    make_code("NA", **fields)
    before = snapshot()
    with pytest.raises(PromoNotApplicable) as caught:
        PromoService.redeem("NA", user_id=user.pk, sku=sku)
    assert caught.value.code == "promo_not_applicable"
    assert snapshot() == before
    assert PromoCode.objects.get().uses_count == 0


# --- hostile input -----------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["", "NO-SUCH", "A\x00B", "x" * 5000, "ПРОМО"])
def test_unknown_or_garbled_code_is_promo_unknown(shop: Shop, make_code: Callable[..., Any],
                                                  user: Any, code: str) -> None:
    make_code("REAL", offer=shop["free"])
    before = snapshot()
    with pytest.raises(BillableError) as caught:
        PromoService.redeem(code, user_id=user.pk)
    assert caught.value.code in {"promo_unknown", "invalid_input"}
    with pytest.raises(BillableError):
        PromoService.quote(code, user_id=user.pk)
    assert snapshot() == before


@pytest.mark.parametrize("code", [None, 123, ["REAL"], b"REAL"])
def test_code_of_a_wrong_type_is_a_billable_error(shop: Shop, make_code: Callable[..., Any],
                                                  user: Any, code: Any) -> None:
    make_code("REAL", offer=shop["free"])
    before = snapshot()
    with pytest.raises(BillableError):
        PromoService.redeem(code, user_id=user.pk)
    assert snapshot() == before


@pytest.mark.parametrize("user_id", [None, "abc", 0, 10**30, "1\x00"])
def test_bad_user_id_is_a_billable_error(shop: Shop, make_code: Callable[..., Any],
                                         user_id: Any) -> None:
    make_code("REAL", offer=shop["free"])
    before = snapshot()
    with pytest.raises(BillableError):
        PromoService.redeem("REAL", user_id=user_id)
    assert snapshot() == before
    assert PromoCode.objects.get().uses_count == 0


@pytest.mark.parametrize("sku", ["NO_SUCH", "A\x00B", "x" * 5000, ["PACK_10"]])
def test_unknown_or_garbled_sku_is_a_billable_error(shop: Shop, make_code: Callable[..., Any],
                                                    user: Any, sku: Any) -> None:
    make_code("ANY", kind="percent", percent_off=10)
    before = snapshot()
    with pytest.raises(BillableError):
        PromoService.redeem("ANY", user_id=user.pk, sku=sku)
    with pytest.raises(BillableError):
        PromoService.quote("ANY", user_id=user.pk, sku=sku)
    assert snapshot() == before


@pytest.mark.parametrize("identities", [{"telegram": "1\x00"}, {"tele\x00gram": 1},
                                        {"telegram": 10**40}, "telegram:1", [1, 2]])
def test_garbled_identities_never_leak_a_database_error(shop: Shop,
                                                        make_code: Callable[..., Any],
                                                        user: Any, identities: Any) -> None:
    make_code("IDS", offer=shop["free"])
    try:
        PromoService.redeem("IDS", user_id=user.pk, identities=identities)
    except BillableError:
        assert TransactionService.get_balance(user.pk, "credits") == 0
    assert_ledger_consistent()


@pytest.mark.parametrize("metadata", [{"note": "a\x00b"}, {"n": 10**40}, "not a dict"])
def test_garbled_metadata_never_leaks_a_database_error(shop: Shop,
                                                       make_code: Callable[..., Any],
                                                       user: Any, metadata: Any) -> None:
    make_code("META", offer=shop["free"])
    try:
        PromoService.redeem("META", user_id=user.pk, metadata=metadata)
    except BillableError:
        assert snapshot()[0] == 0
        assert PromoCode.objects.get().uses_count == 0
    assert_ledger_consistent()


# --- races (PostgreSQL, real threads) ----------------------------------------------------------


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_redemptions_never_exceed_max_uses(shop: Shop, make_code: Callable[..., Any],
                                                      make_user: Callable[..., Any]) -> None:
    make_code("RACE", offer=shop["free"], max_uses=4)
    users = [make_user().pk for _ in range(16)]
    results = run_in_threads(16, lambda i: PromoService.redeem("RACE", user_id=users[i]))
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 4
    assert all(isinstance(r, PromoExhausted) for r in lost), lost
    assert PromoCode.objects.get().uses_count == 4
    assert QuotaBatch.objects.count() == 4
    assert_ledger_consistent()


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_one_customer_racing_itself_redeems_once(shop: Shop, make_code: Callable[..., Any],
                                                 user: Any) -> None:
    make_code("SELF", kind="percent", percent_off=10, offer=shop["pack"])
    results = run_in_threads(8, lambda i: PromoService.redeem("SELF", user_id=user.pk))
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 1
    assert all(isinstance(r, PromoAlreadyUsed) for r in results if r not in won), results
    assert Order.objects.filter(user=user).count() == 1
    assert PromoCode.objects.get().uses_count == 1


class _Sink:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("kind", ["tele\x00gram", "tele\ud800gram"])
def test_identity_type_the_database_cannot_store_is_invalid_input(
        shop: Shop, make_code: Callable[..., Any], user: Any, kind: str) -> None:
    from billable.exceptions import InvalidInput
    from billable.models import TrialHistory

    make_code("IDS", offer=shop["free"])
    with pytest.raises(InvalidInput):
        PromoService.redeem("IDS", user_id=user.pk, identities={kind: 1})
    with pytest.raises(InvalidInput):
        TrialHistory.has_used_trial({kind: 1})
    assert snapshot() == (0, 0, 0, 0)


def test_grant_code_for_an_inactive_offer_is_refused(shop: Shop, make_code: Callable[..., Any],
                                                     user: Any) -> None:
    make_code("GONE", offer=shop["free"])
    shop["free"].is_active = False
    shop["free"].save()
    with pytest.raises(PromoNotApplicable) as caught:
        PromoService.redeem("GONE", user_id=user.pk)
    assert caught.value.code == "promo_not_applicable"
    assert snapshot() == (0, 0, 0, 0)
    assert PromoCode.objects.get().uses_count == 0


def test_discount_for_an_inactive_offer_is_refused(shop: Shop, make_code: Callable[..., Any],
                                                   user: Any) -> None:
    make_code("ANYOFFER", kind="percent", percent_off=10)
    shop["pack"].is_active = False
    shop["pack"].save()
    with pytest.raises(BillableError):
        PromoService.redeem("ANYOFFER", user_id=user.pk, sku="PACK_10")
    assert snapshot() == (0, 0, 0, 0)


def test_promo_grant_and_the_release_of_a_reservation_write_their_events(
        shop: Shop, make_code: Callable[..., Any], user: Any) -> None:
    from billable.events.outbox import subscribed_types
    from billable.models import EventEndpoint, OutboxEvent

    subscribed_types.clear()
    EventEndpoint.objects.create(url="http://127.0.0.1:9/none",
                                 event_types=["grant.created", "order.cancelled"])
    try:
        make_code("EV-GRANT", offer=shop["free"])
        make_code("EV-DISC", kind="percent", percent_off=10, offer=shop["pack"])
        PromoService.redeem("EV-GRANT", user_id=user.pk)
        reserved = PromoService.redeem("EV-DISC", user_id=user.pk)
        PromoRedemption.objects.filter(pk=reserved.redemption.pk).update(
            created_at=timezone.now() - timedelta(days=1))
        call_command("billable_growth_sweep", stdout=_Sink())
        grant = OutboxEvent.objects.get(event_type="grant.created").payload
        assert (grant["source"], grant["quantity"], grant["user_id"]) == ("promo", 5, user.pk)
        cancelled = OutboxEvent.objects.get(event_type="order.cancelled").payload
        assert cancelled["order_id"] == reserved.order.pk
    finally:
        subscribed_types.clear()


def test_discount_code_whose_own_offer_is_inactive_is_refused(
        shop: Shop, make_code: Callable[..., Any], user: Any) -> None:
    make_code("RETIRED", kind="percent", percent_off=10, offer=shop["pack"])
    shop["pack"].is_active = False
    shop["pack"].save()
    for call in (PromoService.redeem, PromoService.quote):
        with pytest.raises(PromoNotApplicable):
            call("RETIRED", user_id=user.pk)
    assert snapshot() == (0, 0, 0, 0)


def test_code_with_surrounding_spaces_is_the_same_code(shop: Shop, make_code: Callable[..., Any],
                                                       user: Any) -> None:
    make_code("SPACED", offer=shop["free"])
    assert PromoService.redeem("  spaced\n", user_id=user.pk).redemption.status == "redeemed"


def test_merging_two_customers_who_both_used_a_code_keeps_both_uses(
        shop: Shop, make_code: Callable[..., Any], make_user: Callable[..., Any]) -> None:
    make_code("BOTH", offer=shop["free"])
    make_code("PENDING", kind="percent", percent_off=10, offer=shop["pack"])
    target, source = make_user(), make_user()
    ExternalIdentity.objects.create(provider="telegram", external_id="31", user=target)
    ExternalIdentity.objects.create(provider="telegram2", external_id="32", user=source)
    PromoService.redeem("BOTH", user_id=target.pk)
    PromoService.redeem("BOTH", user_id=source.pk)
    reserved = PromoService.redeem("PENDING", user_id=source.pk)
    CustomerService.merge_customers(target.pk, source.pk)
    assert TransactionService.get_balance(target.pk, "credits") == 10
    assert PromoCode.objects.get(code="BOTH").uses_count == 2
    with pytest.raises(PromoAlreadyUsed):
        PromoService.redeem("PENDING", user_id=target.pk)
    OrderService.pay_order(reserved.order.id, payment_id="after-merge", payment_method="card")
    assert TransactionService.get_balance(target.pk, "credits") == 20
    assert_ledger_consistent()


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_paying_while_the_sweep_releases_never_pays_a_released_reservation(
        shop: Shop, make_code: Callable[..., Any], make_user: Callable[..., Any]) -> None:
    make_code("TIGHT", kind="percent", percent_off=10, offer=shop["pack"])
    for round_ in range(4):
        customer = make_user()
        result = PromoService.redeem("TIGHT", user_id=customer.pk)
        PromoRedemption.objects.filter(pk=result.redemption.pk).update(
            created_at=timezone.now() - timedelta(days=1))

        def race(i: int, order_id: int = result.order.pk, n: int = round_) -> Any:
            if i == 0:
                return OrderService.pay_order(order_id, payment_id=f"tight-{n}",
                                              payment_method="card")
            return PromoService.release_stale()

        paid, _ = run_in_threads(2, race)
        PromoService.release_stale()      # the sweep's next pass settles what is left
        order = Order.objects.get(pk=result.order.pk)
        redemption = PromoRedemption.objects.get(pk=result.redemption.pk)
        if isinstance(paid, BaseException):
            assert isinstance(paid, OrderStateError), paid
            assert (order.status, redemption.status) == ("cancelled", "released")
            assert TransactionService.get_balance(customer.pk, "credits") == 0
        else:
            assert (order.status, redemption.status) == ("paid", "redeemed")
            assert TransactionService.get_balance(customer.pk, "credits") == 10
    assert PromoCode.objects.get().uses_count == PromoRedemption.objects.filter(
        status="redeemed").count()
    assert_ledger_consistent()
