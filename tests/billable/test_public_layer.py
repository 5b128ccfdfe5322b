"""The public reads and writes the bot kit's port goes through (issue 13: one engine, one port).

The port (``bot_kit/billing.py``) has no model query of its own any more: these are the
selectors, facades and workflow methods it calls, and the one ``pending → paid`` engine step
(``ledger.payments.mark_paid``) shared by ordinary and gift orders.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

pytestmark = pytest.mark.django_db


@pytest.fixture
def pack(make_product: Any, make_offer: Any) -> Any:
    tokens = make_product("TOKENS", name="Tokens", translations={"ru": {"name": "Токены"}})
    return make_offer("PACK", items=[(tokens, 100)], price="5", currency="XTR", name="Pack")


# --- the one pending → paid step ------------------------------------------------------------

def test_orders_and_gifts_share_one_replay_rule(make_user: Any, pack: Any) -> None:
    from billable.exceptions import PaymentConflict
    from billable.growth.gifts import GiftService
    from billable.services import OrderService

    buyer = make_user()
    order = OrderService.create_order(buyer.pk, [{"sku": "PACK"}])
    gift = GiftService.create_gift(buyer.pk, "PACK")
    OrderService.pay_order(order.pk, payment_id="o1", payment_method="telegram_stars")
    GiftService.pay_gift_order(gift.order_id, payment_id="g1", payment_method="telegram_stars")
    for pay, pk, charge in ((OrderService.pay_order, order.pk, "o1"),
                            (GiftService.pay_gift_order, gift.order_id, "g1")):
        assert pay(pk, payment_id=charge).status == "paid"  # no method: a replay
        assert pay(pk, payment_id=charge, payment_method="telegram_stars").status == "paid"
        with pytest.raises(PaymentConflict):  # the same id from another method is not a replay
            pay(pk, payment_id=charge, payment_method="manual")


def test_a_gift_order_is_paid_without_a_grant_and_a_plain_order_is_not_a_gift(
        make_user: Any, pack: Any) -> None:
    from billable.exceptions import OrderStateError
    from billable.growth.gifts import GiftService
    from billable.models import Order, QuotaBatch
    from billable.services import OrderService

    buyer = make_user()
    gift = GiftService.create_gift(buyer.pk, "PACK")
    GiftService.pay_gift_order(gift.order_id, payment_id="g1", payment_method="telegram_stars")
    gift.refresh_from_db()
    assert gift.status == "ready" and gift.expires_at is not None
    assert not QuotaBatch.objects.filter(user=buyer).exists()

    plain = OrderService.create_order(buyer.pk, [{"sku": "PACK"}])
    with pytest.raises(OrderStateError):
        GiftService.pay_gift_order(plain.pk, payment_id="x1")
    assert Order.objects.get(pk=plain.pk).status == "pending"


def test_mark_paid_refuses_before_writing_when_the_hook_raises(make_user: Any,
                                                               pack: Any) -> None:
    from django.db import transaction

    from billable.ledger import payments
    from billable.models import Order
    from billable.services import OrderService

    order = OrderService.create_order(make_user().pk, [{"sku": "PACK"}])

    def refuse(locked: Order) -> None:
        assert locked.status == "pending"
        raise RuntimeError("no")

    with pytest.raises(RuntimeError), transaction.atomic():
        payments.mark_paid(order_id=order.pk, payment_id="p", method="manual",
                           requested_method=None, before=refuse)
    assert Order.objects.get(pk=order.pk).payment_id is None


# --- selectors --------------------------------------------------------------------------------

def test_catalog_selectors(pack: Any, make_offer: Any) -> None:
    from billable.selectors import catalog

    make_offer("OLD", items=[], price="1", is_active=False, name="Old")
    assert catalog.find_offer(" PACK ").sku == "PACK"
    assert catalog.find_offer("OLD") is None
    assert catalog.find_offer("OLD", active_only=False).sku == "OLD"
    assert set(catalog.offers_by_sku(["PACK", "OLD"])) == {"PACK"}
    assert set(catalog.offers_by_sku(["PACK", "OLD"], active_only=False)) == {"PACK", "OLD"}
    assert catalog.skus_with_product(["pack", "OLD"], "tokens") == {"PACK"}
    assert catalog.skus_with_product([], "TOKENS") == set()
    assert catalog.offer_with_product("PACK", "tokens").sku == "PACK"
    assert catalog.offer_with_product("OLD", "TOKENS") is None
    assert catalog.product_names(["tokens", "NOPE"], "ru") == {"TOKENS": "Токены"}
    tokens = pack.items.get().product
    assert catalog.product_names_by_pk([tokens.pk], "en") == {tokens.pk: "Tokens"}


def test_order_selectors(make_user: Any, pack: Any, make_offer: Any) -> None:
    from billable.selectors import orders
    from billable.services import OrderService

    make_offer("EXTRA", items=[(pack.items.get().product, 1)], price="1", currency="XTR")
    order = OrderService.create_order(make_user().pk, [{"sku": "EXTRA"}, {"sku": "PACK"}])
    assert orders.find_order(order.pk).pk == order.pk
    assert orders.find_order(order.pk + 1000) is None
    assert orders.order_skus(order.pk) == ["EXTRA", "PACK"]


def test_entitlement_ends_follow_the_chain_and_stop_at_a_gap(user: Any, make_product: Any,
                                                             make_offer: Any) -> None:
    from billable.models import QuotaBatch
    from billable.selectors.wallet import entitlement_ends
    from billable.services import TransactionService

    pro = make_product("PRO", product_type="period")
    vip = make_product("VIP", product_type="unlimited")
    month = make_offer("MONTH", items=[(pro, 1, "days", 30)])
    forever = make_offer("FOREVER", items=[(vip, 1)])
    now = timezone.now()
    first, = TransactionService.grant_offer(user.pk, month)
    renewal, = TransactionService.grant_offer(user.pk, month)  # queued after the first
    late, = TransactionService.grant_offer(user.pk, month)
    TransactionService.grant_offer(user.pk, forever)
    QuotaBatch.objects.filter(pk=late.pk).update(valid_from=now + timedelta(days=100),
                                                 expires_at=now + timedelta(days=130))
    renewal.refresh_from_db()
    ends = entitlement_ends(user.pk, now=now + timedelta(seconds=1))
    assert ends == {"PRO": renewal.expires_at, "VIP": None}
    assert first.expires_at < renewal.expires_at
    assert entitlement_ends(user.pk, now=now + timedelta(days=200)) == {"VIP": None}


# --- facades and workflows --------------------------------------------------------------------

def test_identity_profile_first_identity_and_watch(make_user: Any) -> None:
    from billable.models import ExternalIdentity
    from billable.services import IdentityService

    owner = make_user()
    assert IdentityService.profile("telegram", "42") == {}
    older = ExternalIdentity.objects.create(provider="telegram", external_id="42", user=owner,
                                            metadata={"language_code": "ru"})
    ExternalIdentity.objects.create(provider="telegram", external_id="43", user=owner,
                                    created_at=older.created_at + timedelta(seconds=1))
    assert IdentityService.profile("telegram", 42) == {"language_code": "ru"}
    assert IdentityService.first_identity(owner.pk, "telegram").pk == older.pk
    assert IdentityService.first_identity(owner.pk, "email") is None

    seen: list[tuple[str, Any]] = []
    IdentityService.watch(lambda external_id, user_id: seen.append((external_id, user_id)),
                          uid="tests.public_layer")
    try:
        older.delete()
    finally:
        from django.db.models.signals import post_delete, post_save

        post_save.disconnect(dispatch_uid="tests.public_layer.save", sender=ExternalIdentity)
        post_delete.disconnect(dispatch_uid="tests.public_layer.delete", sender=ExternalIdentity)
    assert seen == [("42", owner.pk)]


def test_offer_validators_register_once(pack: Any) -> None:
    from django.core.exceptions import ValidationError

    from billable.models.catalog import OFFER_VALIDATORS
    from billable.services import OfferService

    def no_free(offer: Any) -> None:
        if offer.price == 0:
            raise ValidationError("free")

    try:
        OfferService.register_validator(no_free)
        OfferService.register_validator(no_free)
        assert OFFER_VALIDATORS.count(no_free) == 1
        pack.price = 0
        with pytest.raises(ValidationError):
            pack.save()
    finally:
        OFFER_VALIDATORS.remove(no_free)


def test_gift_reads(make_user: Any, pack: Any) -> None:
    from billable.growth.gifts import GiftService
    from billable.growth.promo import PromoService

    gift = GiftService.create_gift(make_user().pk, "PACK")
    assert GiftService.expiry_of(gift.token) is None  # not paid yet
    GiftService.pay_gift_order(gift.order_id, payment_id="g1")
    assert GiftService.token_for_order(gift.order_id) == gift.token
    assert GiftService.token_for_order(None) is None
    expires = GiftService.expiry_of(gift.token)
    assert expires is not None and GiftService.expiry_of(None) is None
    assert GiftService.expired_order_ids() == []
    GiftService.expire_gifts(now=expires)
    assert GiftService.expired_order_ids() == [gift.order_id]
    assert PromoService.get_redemption(None) is None
