"""Gifts: paid by one customer, granted to the first other customer who claims them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from billable.exceptions import (
    GiftAlreadyClaimed,
    GiftExpired,
    GiftOwn,
    GiftUnknown,
    InvalidInput,
)
from billable.growth.gifts import GiftService
from billable.ledger.audit import check_ledger
from billable.models import Gift, Order, QuotaBatch
from billable.services import OrderService, TransactionService

pytestmark = pytest.mark.django_db


def balance(user: Any) -> int:
    return TransactionService.get_balance(user.pk, "CREDITS")


def test_paying_a_gift_grants_nothing_to_the_buyer(make_user, paid_gift):
    buyer = make_user()
    gift = paid_gift(buyer)
    assert gift.status == "ready" and gift.expires_at is not None
    assert Order.objects.get(pk=gift.order_id).status == "paid"
    assert balance(buyer) == 0 and not QuotaBatch.objects.exists()


def test_first_claim_wins_and_the_second_is_refused(make_user, paid_gift):
    buyer, alice, bob = make_user(), make_user(), make_user()
    gift = paid_gift(buyer)
    batches = GiftService.claim(gift.token, user_id=alice.pk)
    assert [b.initial_quantity for b in batches] == [10]
    assert batches[0].order_item.order_id == gift.order_id
    for claimer in (bob, alice):
        with pytest.raises(GiftAlreadyClaimed) as caught:
            GiftService.claim(gift.token, user_id=claimer.pk)
        assert caught.value.code == "gift_already_claimed"
    assert (balance(alice), balance(bob), balance(buyer)) == (10, 0, 0)
    gift.refresh_from_db()
    assert gift.status == "claimed" and gift.claimed_by_id == alice.pk
    assert check_ledger() == []


def test_the_buyer_cannot_claim_their_own_gift(make_user, paid_gift):
    buyer = make_user()
    gift = paid_gift(buyer)
    with pytest.raises(GiftOwn) as caught:
        GiftService.claim(gift.token, user_id=buyer.pk)
    assert caught.value.code == "gift_own"
    assert Gift.objects.get().status == "ready"


def test_unknown_unpaid_and_expired_gifts_are_refused(make_user, shop, paid_gift):
    buyer, alice = make_user(), make_user()
    for token in ("nope", "", "bad token!", None):
        with pytest.raises(GiftUnknown):
            GiftService.claim(token, user_id=alice.pk)
    unpaid = GiftService.create_gift(buyer.pk, "PACK_10")
    with pytest.raises(GiftExpired):
        GiftService.claim(unpaid.token, user_id=alice.pk)
    gift = paid_gift(buyer)
    Gift.objects.filter(pk=gift.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(GiftExpired) as caught:
        GiftService.claim(gift.token, user_id=alice.pk)
    assert caught.value.code == "gift_expired"
    assert [g.pk for g in GiftService.expire_gifts()] == [gift.pk]
    assert GiftService.expire_gifts() == []
    assert balance(alice) == 0


def test_a_refunded_gift_cannot_be_claimed(make_user, paid_gift,
                                           django_capture_on_commit_callbacks):
    buyer, alice = make_user(), make_user()
    gift = paid_gift(buyer)
    with django_capture_on_commit_callbacks(execute=True):
        OrderService.refund_paid_order(gift.order_id, reason="unclaimed")
    assert Gift.objects.get().status == "refunded"
    with pytest.raises(GiftExpired):
        GiftService.claim(gift.token, user_id=alice.pk)


def test_refunding_a_claimed_gift_revokes_it_from_the_claimer(make_user, paid_gift):
    buyer, alice = make_user(), make_user()
    gift = paid_gift(buyer)
    GiftService.claim(gift.token, user_id=alice.pk)
    OrderService.refund_paid_order(gift.order_id)
    assert balance(alice) == 0
    assert check_ledger() == []


def test_gift_payment_is_exactly_once_per_payment_id(make_user, shop):
    from billable.exceptions import PaymentConflict

    buyer = make_user()
    gift = GiftService.create_gift(buyer.pk, "PACK_10")
    GiftService.pay_gift_order(gift.order_id, payment_id="c1")
    GiftService.pay_gift_order(gift.order_id, payment_id="c1")
    with pytest.raises(PaymentConflict):
        GiftService.pay_gift_order(gift.order_id, payment_id="c2")
    other = GiftService.create_gift(buyer.pk, "PACK_10")
    with pytest.raises(PaymentConflict):
        GiftService.pay_gift_order(other.order_id, payment_id="c1",
                                   payment_method="manual")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_free_offer_cannot_be_given_as_a_gift(make_user, shop, mode):
    buyer = make_user()
    create = (GiftService.create_gift if mode == "sync"
              else async_to_sync(GiftService.acreate_gift))
    for _ in range(2):
        with pytest.raises(InvalidInput) as caught:
            create(buyer.pk, "FREE_5")
        assert caught.value.code == "invalid_input" and caught.value.details == {"field": "sku"}
    assert not Gift.objects.exists() and not Order.objects.exists()
    assert create(buyer.pk, "PACK_10").order.total_amount == 50  # a priced offer still works
