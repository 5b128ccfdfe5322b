"""Two bots of one project: their ids, configs and a shared catalog (used by the tests and by
the bot processes of ``bot_process.py``)."""

from __future__ import annotations

from typing import Any

from bot_kit.config import BillingConfig

BOT_A, BOT_B = 111_000_001, 222_000_002
TOKEN_A, TOKEN_B = f"{BOT_A}:TEST-A", f"{BOT_B}:TEST-B"
#: Both bots sign with the same secret: only the bot binding tells their invoices apart.
SECRETS = ("shared-secret-0123456789",)


def two_configs(wallet: str, **extra: Any) -> tuple[BillingConfig, BillingConfig]:
    """Bot A sells STARS_10 (and STARS_20), bot B only STARS_20; both give the TRIAL offer."""
    common = dict(signing_secrets=SECRETS, trial_offer="TRIAL", wallet=wallet, **extra)
    return (BillingConfig(bot_id=BOT_A, offers=("STARS_10", "STARS_20"), **common),
            BillingConfig(bot_id=BOT_B, offers=("STARS_20",), **common))


def make_catalog() -> None:
    """CREDITS sold for Stars by both bots; a free TRIAL of 3 credits (sync, any database)."""
    from decimal import Decimal

    from billable.models import Offer, OfferItem, Product

    credits = Product.objects.create(product_key="CREDITS", name="Credits",
                                     product_type=Product.ProductType.QUANTITY)
    for sku, quantity, price in (("STARS_10", 10, "50"), ("STARS_20", 20, "90"),
                                 ("TRIAL", 3, "0")):
        offer = Offer.objects.create(sku=sku, name=f"{quantity} credits", price=Decimal(price),
                                     currency="XTR")
        OfferItem.objects.create(offer=offer, product=credits, quantity=quantity)
