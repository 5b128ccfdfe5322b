"""``billable_seed_demo``: load the small demo catalog used by the example bot (idempotent)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from billable.models import Offer, OfferItem, Product

#: ``product_key: (name, product_type, is_currency, description)``
PRODUCTS: dict[str, tuple[str, str, bool, str]] = {
    "CREDITS": ("Credits", "quantity", True, "Internal currency, bought with Stars."),
    "PREDICTIONS": ("Predictions", "quantity", False, "One /predict call each."),
    "PREMIUM": ("Premium", "period", False, "Premium access for a period."),
}

#: ``sku: (name, price, currency, [(product_key, quantity, period_unit, period_value)])``
OFFERS: dict[str, tuple[str, str, str, list[tuple[str, int, str, int | None]]]] = {
    "OFF_WELCOME_TRIAL": ("Welcome trial", "0", "XTR",
                          [("PREDICTIONS", 3, "forever", None)]),
    "STARS_PACK_S": ("100 credits", "50", "XTR", [("CREDITS", 100, "forever", None)]),
    "STARS_PACK_M": ("500 credits", "200", "XTR", [("CREDITS", 500, "forever", None)]),
    "EXCHANGE_PREDICT_10": ("10 predictions for 50 credits", "50", "CREDITS",
                            [("PREDICTIONS", 10, "forever", None)]),
    "PREMIUM_MONTH": ("Premium for 30 days", "250", "XTR", [("PREMIUM", 1, "days", 30)]),
}


#: Russian names and descriptions (``translations``) of the demo catalog.
TRANSLATIONS: dict[str, dict[str, dict[str, str]]] = {
    "CREDITS": {"ru": {"name": "Кредиты",
                       "description": "Внутренняя валюта, покупается за звёзды."}},
    "PREDICTIONS": {"ru": {"name": "Предсказания",
                           "description": "Одно на каждый вызов /predict."}},
    "PREMIUM": {"ru": {"name": "Премиум", "description": "Премиум-доступ на период."}},
    "OFF_WELCOME_TRIAL": {"ru": {"name": "Приветственный пробный пакет"}},
    "STARS_PACK_S": {"ru": {"name": "100 кредитов"}},
    "STARS_PACK_M": {"ru": {"name": "500 кредитов"}},
    "EXCHANGE_PREDICT_10": {"ru": {"name": "10 предсказаний за 50 кредитов"}},
    "PREMIUM_MONTH": {"ru": {"name": "Премиум на 30 дней"}},
}


def seed_demo_catalog() -> dict[str, list[str]]:
    """Create or update the demo products and offers; return the keys and SKUs touched."""
    with transaction.atomic():
        products = {}
        for key, (name, kind, is_currency, description) in PRODUCTS.items():
            products[key], _ = Product.objects.update_or_create(
                product_key=key,
                defaults={"name": name, "product_type": kind, "is_currency": is_currency,
                          "description": description, "is_active": True,
                          "translations": TRANSLATIONS.get(key, {})},
            )
        for sku, (name, price, currency, items) in OFFERS.items():
            offer, _ = Offer.objects.update_or_create(
                sku=sku,
                defaults={"name": name, "price": Decimal(price), "currency": currency,
                          "is_active": True, "translations": TRANSLATIONS.get(sku, {})},
            )
            for key, quantity, unit, value in items:
                OfferItem.objects.update_or_create(
                    offer=offer, product=products[key],
                    defaults={"quantity": quantity, "period_unit": unit, "period_value": value},
                )
    return {"products": list(PRODUCTS), "offers": list(OFFERS)}


class Command(BaseCommand):
    """Load the demo catalog (products CREDITS, PREDICTIONS, PREMIUM and five offers).

    Running it again updates the same rows; nothing is duplicated. The app's migrations seed
    no data — this command is the only place demo data comes from.
    """

    help = "Load the demo catalog (idempotent) and print its product keys and SKUs."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            seeded = seed_demo_catalog()
        except ValidationError as exc:  # e.g. a demo SKU already used as a host product key
            raise CommandError("Demo catalog not loaded (nothing was written): "
                               + " ".join(exc.messages)) from exc
        self.stdout.write("Products: " + ", ".join(seeded["products"]))
        for sku in seeded["offers"]:
            name, price, currency, _ = OFFERS[sku]
            self.stdout.write(f"Offer {sku}: {name} — {price} {currency}")
        self.stdout.write(self.style.SUCCESS(
            f"Demo catalog ready: {len(seeded['products'])} products, "
            f"{len(seeded['offers'])} offers."))
