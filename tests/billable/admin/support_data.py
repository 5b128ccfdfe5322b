"""A support scenario for the admin tests and screenshots: two Telegram customers created the
way the bot creates them (``IdentityService.resolve_user`` with the Telegram profile), Star
offers, a paid order with its Telegram payment, a pending order, consumption and an open hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from billable.models import Offer, OfferItem, Order, Product
from billable.services import OrderService, TransactionService
from billable.services.identities import IdentityService

ALICE_TG_ID = "5454776146"
ALICE_PROFILE = {"username": "alice_stars", "first_name": "Alice", "last_name": "Moreau",
                 "language_code": "fr"}
BOB_TG_ID = "777000111"
BOB_PROFILE = {"username": "bobby", "first_name": "Bob", "language_code": "en"}


@dataclass
class Support:
    alice: Any
    bob: Any
    credits: Product
    premium: Product
    pack: Offer
    monthly: Offer
    paid_order: Order
    pending_order: Order
    hold_id: str
    payment: Any


def build_support_data() -> Support:
    alice = IdentityService.resolve_user(provider="telegram", external_id=ALICE_TG_ID,
                                         profile=ALICE_PROFILE).user
    bob = IdentityService.resolve_user(provider="telegram", external_id=BOB_TG_ID,
                                       profile=BOB_PROFILE).user
    credits = Product.objects.create(product_key="CREDITS", name="Image credits",
                                     product_type=Product.ProductType.QUANTITY)
    premium = Product.objects.create(product_key="PREMIUM", name="Premium access",
                                     product_type=Product.ProductType.PERIOD)
    pack = Offer.objects.create(sku="PACK_100", name="100 credits", price=Decimal("50"),
                                currency="XTR")
    OfferItem.objects.create(offer=pack, product=credits, quantity=100)
    monthly = Offer.objects.create(sku="PREMIUM_30", name="Premium, 30 days",
                                   price=Decimal("250"), currency="XTR")
    OfferItem.objects.create(offer=monthly, product=premium, quantity=1,
                             period_unit=OfferItem.PeriodUnit.DAYS, period_value=30)

    paid = OrderService.create_order(alice.pk, [{"sku": "PACK_100", "quantity": 1}])
    payment = None
    from django.apps import apps

    if apps.is_installed("bot_kit"):
        from bot_kit.models import TelegramPayment

        payment = TelegramPayment.objects.create(
            charge_id="stxAbC123-charge", telegram_user_id=int(ALICE_TG_ID), user=alice,
            order=paid, currency="XTR", total_amount=50, invoice_payload=f"order:{paid.pk}",
            status=TelegramPayment.Status.CONFIRMED)
    paid = OrderService.pay_order(paid.pk, payment_id="stxAbC123-charge",
                                  payment_method="telegram_stars")
    pending = OrderService.create_order(alice.pk, [{"sku": "PREMIUM_30", "quantity": 1}])
    TransactionService.consume_quota(alice.pk, "CREDITS", amount=12, action_id="render-1")
    hold = TransactionService.reserve_quota(alice.pk, "CREDITS", 5, ttl=timedelta(minutes=15),
                                            action_type="render")
    TransactionService.grant_offer(bob.pk, pack, source="manual_grant")
    return Support(alice=alice, bob=bob, credits=credits, premium=premium, pack=pack,
                   monthly=monthly, paid_order=paid, pending_order=pending, hold_id=hold,
                   payment=payment)
