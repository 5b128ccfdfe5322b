"""Cross-feature races on PostgreSQL, with real threads and connections.

The state machine (test_money_state_machine.py) runs one operation at a time; these tests run
the pairs of features whose rows overlap at the same moment: a gift claim racing the refund of
its order, a hold commit racing the refund of the order its units came from, and a merge racing
a keyed consume and a hold commit of the merged-away account. Afterwards: every caller got a
documented answer, PostgreSQL counted no deadlock, nothing was minted or lost, and the ledger
invariant holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from billable.exceptions import GiftExpired
from billable.growth.gifts import GiftService
from billable.models import Gift, QuotaBatch, Transaction
from billable.services import CustomerService, OrderService
from billable.services import TransactionService as T
from tests.helpers import requires_postgres, run_in_threads

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]
ROUNDS = 8


def _deadlocks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def _race(*calls: Callable[[], Any]) -> list[Any]:
    return run_in_threads(len(calls), lambda i: calls[i]())


def _units(*users: Any, key: str = "CREDITS") -> int:
    return sum(T.get_balance(user.pk, key) for user in users)


@pytest.fixture
def catalog(make_product, make_offer):
    credits = make_product("CREDITS")
    premium = make_product("PREMIUM", product_type="period")
    make_offer("PACK_10", items=[(credits, 10)], price="10")
    make_offer("BUNDLE", items=[(credits, 6), (premium, 1, "days", 30)], price="12")


def test_a_gift_claim_racing_the_refund_of_its_order(make_user, catalog):
    """Claimed first: the refund revokes the claimer's units; refunded first: the claim is
    refused. Never both kept, never a deadlock."""
    buyer, deadlocks = make_user(), _deadlocks()
    for round_ in range(ROUNDS):
        claimer = make_user()
        gift = GiftService.create_gift(buyer.pk, "BUNDLE")
        GiftService.pay_gift_order(gift.order_id, payment_id=f"gift-{round_}")

        claimed, refunded = _race(
            lambda: GiftService.claim(gift.token, user_id=claimer.pk),  # noqa: B023
            lambda: OrderService.refund_paid_order(gift.order_id),  # noqa: B023
        )

        assert not isinstance(refunded, BaseException), refunded
        assert isinstance(claimed, list) or isinstance(claimed, GiftExpired), claimed
        assert _units(claimer) == 0 and _units(buyer) == 0
        assert not T.check_quota(claimer.pk, "PREMIUM")["can_use"]
        batches = QuotaBatch.objects.filter(order_item__order_id=gift.order_id)
        if isinstance(claimed, list):
            assert sorted(batches.values_list("state", flat=True)) == ["REVOKED", "REVOKED"]
            assert set(batches.values_list("user_id", flat=True)) == {claimer.pk}
        else:
            assert not batches.exists()
        assert Gift.objects.get(pk=gift.pk).status == "refunded"
    assert T.check_ledger() == []
    assert _deadlocks() == deadlocks


def test_a_hold_commit_racing_the_refund_of_the_order_it_holds_from(make_user, catalog):
    """Units held before the refund are the customer's to settle: committed units are charged,
    the rest goes back to a revoked batch and is written off. The batch ends at zero with
    exactly its credit debited, whichever runs first."""
    deadlocks = _deadlocks()
    for round_ in range(ROUNDS):
        user = make_user()
        order = OrderService.create_order(user.pk, [{"sku": "PACK_10", "quantity": 1}])
        OrderService.pay_order(order.pk, payment_id=f"hold-{round_}")
        T.consume_quota(user.pk, "CREDITS", amount=1)
        rid = T.reserve_quota(user.pk, "CREDITS", 6)

        committed, refunded = _race(
            lambda: T.commit_reservation(rid, 4),  # noqa: B023
            lambda: OrderService.refund_paid_order(order.pk),  # noqa: B023
        )

        assert not isinstance(refunded, BaseException), refunded
        assert not isinstance(committed, BaseException), committed
        assert committed["success"] and committed["amount"] == 4
        batch = QuotaBatch.objects.get(order_item__order_id=order.pk)
        assert (batch.state, batch.remaining_quantity) == ("REVOKED", 0)
        rows = Transaction.objects.filter(quota_batch=batch, direction="DEBIT")
        assert rows.aggregate(n=Sum("amount"))["n"] == 10
        assert rows.filter(action_type="usage").aggregate(n=Sum("amount"))["n"] == 1 + 4
        assert _units(user) == 0
    assert T.check_ledger() == []
    assert _deadlocks() == deadlocks


def test_a_merge_racing_a_keyed_consume_and_a_hold_commit_of_the_source(make_user, catalog):
    """Whatever order the three take, the merged customer holds exactly what was granted minus
    what was charged, and retrying the consume under its key charges nothing more."""
    deadlocks = _deadlocks()
    for _ in range(ROUNDS):
        target, source = make_user(), make_user()
        T.grant_offer(target.pk, "PACK_10")
        T.grant_offer(source.pk, "PACK_10")
        T.grant_offer(source.pk, "PACK_10")
        rid = T.reserve_quota(source.pk, "CREDITS", 5)

        merged, consumed, committed = _race(
            lambda: CustomerService.merge_customers(target.pk, source.pk),  # noqa: B023
            lambda: T.consume_quota(source.pk, "CREDITS", amount=3,  # noqa: B023
                                    idempotency_key="use-1"),
            lambda: T.commit_reservation(rid, 2),  # noqa: B023
        )

        for answer in (merged, consumed, committed):
            assert not isinstance(answer, BaseException), answer
        assert committed["success"]
        # after the merge the source is empty: a consume that came second found nothing
        charged = 2 + (3 if consumed["success"] else 0)
        assert consumed["success"] or consumed["error"] == "quota_exhausted", consumed
        assert _units(target) == 30 - charged and _units(source) == 0
        if consumed["success"]:  # a retry replays at either account: no second charge
            for user in (source, target):
                again = T.consume_quota(user.pk, "CREDITS", amount=3, idempotency_key="use-1")
                assert again["success"] and "idempotent" in again["message"], again
                assert again["usage_id"] == consumed["usage_id"]
            assert _units(target, source) == 30 - charged
    assert T.check_ledger() == []
    assert _deadlocks() == deadlocks


def test_a_gift_claim_racing_the_merge_of_its_buyer(make_user, catalog):
    """The merge locks the buyer's orders and then moves the buyer's gifts; a claim locks the
    gift and then its order. Both finish, in either order, without a deadlock."""
    deadlocks = _deadlocks()
    for round_ in range(ROUNDS):
        buyer, into, claimer = make_user(), make_user(), make_user()
        gift = GiftService.create_gift(buyer.pk, "BUNDLE")
        GiftService.pay_gift_order(gift.order_id, payment_id=f"merge-gift-{round_}")

        claimed, merged = _race(
            lambda: GiftService.claim(gift.token, user_id=claimer.pk),  # noqa: B023
            lambda: CustomerService.merge_customers(into.pk, buyer.pk),  # noqa: B023
        )

        assert isinstance(claimed, list), claimed
        assert not isinstance(merged, BaseException), merged
        assert _units(claimer) == 6 and _units(buyer, into) == 0
        assert Gift.objects.get(pk=gift.pk).buyer_id == into.pk
    assert T.check_ledger() == []
    assert _deadlocks() == deadlocks


def test_a_grant_code_redeemed_racing_a_merge_into_the_redeemer(make_user, catalog,
                                                                 make_offer):
    """The merged-away account used the code; the target redeems it while the merge runs.
    Either the redemption comes first (and the merge keeps both uses) or the merge does (and
    the code is used for the target): never both a second grant and a deadlock."""
    from billable.growth.promo import PromoService
    from billable.models import Product, PromoCode

    month = make_offer("FREE_MONTH", items=[(Product.objects.get(product_key="PREMIUM"), 1,
                                             "days", 30)])
    deadlocks = _deadlocks()
    for round_ in range(ROUNDS):
        target, source = make_user(), make_user()
        code = PromoCode.objects.create(code=f"MONTHFREE{round_}", offer=month)
        T.grant_offer(target.pk, "BUNDLE")  # running access: the grant locks the account
        PromoService.redeem(code.code, user_id=source.pk)

        redeemed, merged = _race(
            lambda: PromoService.redeem(code.code, user_id=target.pk),  # noqa: B023
            lambda: CustomerService.merge_customers(target.pk, source.pk),  # noqa: B023
        )

        assert not isinstance(merged, BaseException), merged
        assert not isinstance(redeemed, BaseException) or getattr(
            redeemed, "code", None) == "promo_already_used", redeemed
    assert T.check_ledger() == []
    assert _deadlocks() == deadlocks


def test_refunding_a_claimed_gift_racing_a_merge_of_its_claimer(make_user, catalog,
                                                                make_offer):
    """The refund revokes the claimer's gift period and moves the claimer's next period
    forward over it; the merge moves the claimer's batches to another account meanwhile.
    Whichever runs first, the merged customer's remaining month starts now, without a hole."""
    from billable.models import Product

    make_offer("MONTH", items=[(Product.objects.get(product_key="PREMIUM"), 1, "days", 30)],
               price="5")
    deadlocks = _deadlocks()
    for round_ in range(ROUNDS):
        buyer, claimer, into = make_user(), make_user(), make_user()
        gift = GiftService.create_gift(buyer.pk, "BUNDLE")
        GiftService.pay_gift_order(gift.order_id, payment_id=f"gift-merge-{round_}")
        GiftService.claim(gift.token, user_id=claimer.pk)  # 30 days from now
        own = OrderService.create_order(claimer.pk, [{"sku": "MONTH", "quantity": 1}])
        OrderService.pay_order(own.pk, payment_id=f"own-{round_}")  # queued: days 30-60

        refunded, merged = _race(
            lambda: OrderService.refund_paid_order(gift.order_id),  # noqa: B023
            lambda: CustomerService.merge_customers(into.pk, claimer.pk),  # noqa: B023
        )

        assert not isinstance(refunded, BaseException), refunded
        assert not isinstance(merged, BaseException), merged
        assert T.check_quota(into.pk, "PREMIUM")["can_use"], round_
        month = QuotaBatch.objects.get(order_item__order_id=own.pk)
        assert month.user_id == into.pk and month.valid_from <= timezone.now()
    assert T.check_ledger() == []
    assert _deadlocks() == deadlocks


def test_a_grant_or_gift_claim_racing_a_merge_of_the_receiver(make_user, catalog):
    """Units granted to an account that is being merged away end with the merged customer:
    the grant finishes before the merge (and moves with it) or after it (and is then at the
    emptied account only if it started after the merge committed). A grant that inserted its
    batch while the merge was moving batches used to stay behind on the emptied account."""
    buyer = make_user()
    for round_ in range(ROUNDS):
        into, source = make_user(), make_user()
        gift = GiftService.create_gift(buyer.pk, "PACK_10")
        GiftService.pay_gift_order(gift.order_id, payment_id=f"recv-{round_}")
        T.grant_offer(source.pk, "PACK_10")  # something for the merge to move

        merged, granted, claimed = _race(
            lambda: CustomerService.merge_customers(into.pk, source.pk),  # noqa: B023
            lambda: T.grant_offer(source.pk, "PACK_10"),  # noqa: B023
            lambda: GiftService.claim(gift.token, user_id=source.pk),  # noqa: B023
        )

        for answer in (merged, granted, claimed):
            assert not isinstance(answer, BaseException), answer
        moved = merged["moved_batches"]
        # what the merge moved is at the target; what it did not move was written after it
        assert _units(into) == 10 * moved, (round_, moved, _units(into), _units(source))
        assert _units(into) + _units(source) == 30
    assert T.check_ledger() == []
