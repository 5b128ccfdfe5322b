"""A generated data set for the revenue dashboard: orders in two currencies over several days
(some refunded, pending, cancelled or free; a few exactly on day boundaries), trial claims
followed (or not) by purchases, consumption mixed with the engine's own write-offs, and Stars
subscriptions whose payments point at orders of two bots.

Rows are written through the models with chosen timestamps (the services stamp "now"); the
scenario test in ``test_figures.py`` covers what the services themselves write.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType

from billable.models import Offer, OfferItem, Order, OrderItem, Product, QuotaBatch, Transaction

FIRST_DAY = date(2025, 3, 3)  # two weeks around the US change to summer time (9 March)
LAST_DAY = date(2025, 3, 16)
BOTS = ("111", "222", None)
ZONES = (ZoneInfo("UTC"), ZoneInfo("America/New_York"))


@dataclass
class Catalog:
    credits: Product
    pdf: Product
    pro: Product
    offers: dict[str, Offer] = field(default_factory=dict)


def _product(key: str, kind: str) -> Product:
    return Product.objects.create(product_key=key, name=key.title(), product_type=kind)


def _offer(sku: str, price: str, currency: str, product: Product, quantity: int) -> Offer:
    offer = Offer.objects.create(sku=sku, name=f"{sku.replace('_', ' ').title()}",
                                 price=Decimal(price), currency=currency)
    OfferItem.objects.create(offer=offer, product=product, quantity=quantity)
    return offer


def make_catalog() -> Catalog:
    catalog = Catalog(_product("CREDITS", "quantity"), _product("PDF", "quantity"),
                      _product("PRO", "period"))
    for sku, price, currency, product, quantity in (
            ("PACK_XTR", "50", "XTR", catalog.credits, 100),
            ("PRO_XTR", "250", "XTR", catalog.pro, 1),
            ("PACK_USD", "4.99", "USD", catalog.credits, 100),
            ("PDF_USD", "1.25", "USD", catalog.pdf, 10),
            ("GIFT_USD", "0", "USD", catalog.pdf, 1),
            ("TRIAL", "0", "XTR", catalog.credits, 10)):
        catalog.offers[sku] = _offer(sku, price, currency, product, quantity)
    return catalog


def some_instant(rng: random.Random) -> datetime:
    """An instant from two days before the range to two days after it, sometimes exactly on
    a local midnight of one of :data:`ZONES` (day boundaries must be counted right)."""
    day = FIRST_DAY + timedelta(days=rng.randint(-2, (LAST_DAY - FIRST_DAY).days + 2))
    zone = rng.choice(ZONES)
    if rng.random() < 0.15:
        return datetime.combine(day, time.min, zone)
    seconds = rng.randint(0, 86399)
    return datetime.combine(day, time.min, zone) + timedelta(seconds=seconds,
                                                             microseconds=rng.randint(0, 999999))


def _metadata(rng: random.Random) -> dict[str, Any]:
    bot = rng.choice(BOTS)
    return {"bot_id": bot, "source": "dataset"} if bot else {"source": "dataset"}


def make_orders(rng: random.Random, users: list[Any], catalog: Catalog, count: int) -> list[Order]:
    statuses = ["paid"] * 6 + ["refunded"] * 2 + ["pending", "cancelled"]
    orders = []
    for _ in range(count):
        currency = rng.choice(["XTR", "USD"])
        offers = [o for o in catalog.offers.values() if o.currency == currency and o.sku != "TRIAL"]
        lines = [(offer, rng.randint(1, 3)) for offer in rng.sample(offers, rng.randint(1, 2))]
        status = rng.choice(statuses)
        paid_at = some_instant(rng) if status in ("paid", "refunded") else None
        order = Order.objects.create(
            user=rng.choice(users), currency=currency, status=status, paid_at=paid_at,
            total_amount=sum((o.price * q for o, q in lines), Decimal("0")),
            metadata=_metadata(rng), payment_method="dataset")
        OrderItem.objects.bulk_create([OrderItem(order=order, offer=o, quantity=q, price=o.price)
                                       for o, q in lines])
        orders.append(order)
    return orders


def _batch(user: Any, product: Product, quantity: int, at: datetime) -> QuotaBatch:
    return QuotaBatch.objects.create(user=user, product=product, initial_quantity=quantity,
                                     remaining_quantity=quantity, created_at=at, valid_from=at)


def make_trials(rng: random.Random, users: list[Any], catalog: Catalog) -> None:
    offer = catalog.offers["TRIAL"]
    rows = []
    for user in rng.sample(users, k=len(users) * 2 // 3):
        for _ in range(rng.choice([1, 1, 2])):
            at = some_instant(rng)
            batch = _batch(user, catalog.credits, 10, at)
            rows.append(Transaction(user=user, quota_batch=batch, amount=10,
                                    direction=Transaction.Direction.CREDIT,
                                    action_type="trial_activation", created_at=at,
                                    content_type=ContentType.objects.get_for_model(Offer),
                                    object_id=str(offer.pk), metadata=_metadata(rng)))
    Transaction.objects.bulk_create(rows)


def make_debits(rng: random.Random, users: list[Any], catalog: Catalog, count: int) -> None:
    order_type = ContentType.objects.get_for_model(Order)
    kinds = ["usage"] * 5 + ["pdf_export", "exchange", "expiration", "revocation", "refund"]
    rows = []
    for _ in range(count):
        user, at = rng.choice(users), some_instant(rng)
        product = rng.choice([catalog.credits, catalog.pdf, catalog.pro])
        batch = _batch(user, product, 50, at - timedelta(days=1))
        kind = rng.choice(kinds)
        amount = 0 if product.product_type == "period" else rng.randint(1, 9)
        related = {"content_type": order_type, "object_id": "1"} if kind == "refund" else {}
        rows.append(Transaction(user=user, quota_batch=batch, amount=amount,
                                direction=Transaction.Direction.DEBIT, action_type=kind,
                                created_at=at, metadata=_metadata(rng), **related))
    Transaction.objects.bulk_create(rows)


def make_subscriptions(rng: random.Random, users: list[Any], orders: list[Order], tag: str
                       ) -> None:
    from bot_kit.models import StarSubscription, TelegramPayment

    edges = []  # created or expiring exactly when the range starts or ends
    for zone in ZONES:
        first = datetime.combine(FIRST_DAY, time.min, zone)
        after = datetime.combine(LAST_DAY + timedelta(days=1), time.min, zone)
        edges += [(first - timedelta(days=3), first), (first, after),
                  (first - timedelta(days=1), after), (after, after + timedelta(days=9))]
    for n in range(30 + len(edges)):
        created = some_instant(rng) - timedelta(days=rng.randint(0, 20))
        roll = rng.random()
        expires: datetime | None = created + timedelta(days=rng.randint(1, 30))
        if n >= 30:
            created, expires = edges[n - 30]
        elif roll < 0.1:
            expires = None
        elif roll < 0.15:
            expires = created - timedelta(hours=1)  # malformed: never counts
        elif roll < 0.25:
            expires = some_instant(rng)  # often exactly on a midnight
        user = rng.choice(users)
        sub = StarSubscription.objects.create(
            user=user, telegram_user_id=1000 + n, sku="PRO_XTR", invoice_payload=f"{tag}p{n}",
            first_charge_id=f"{tag}c{n}", last_charge_id=f"{tag}c{n}", expires_at=expires,
            created_at=created,
            state=rng.choice(["active", "canceled", "failed"]))
        for k in range(rng.randint(0, 2)):
            TelegramPayment.objects.create(
                charge_id=f"{tag}c{n}-{k}", telegram_user_id=1000 + n, user=user,
                order=rng.choice(orders), subscription=sub, currency="XTR", total_amount=250,
                status="confirmed")


def make_dataset(seed: int = 17, *, users: int = 12, orders: int = 90, debits: int = 120,
                 catalog: Catalog | None = None) -> Catalog:
    """Build the whole data set (on ``catalog`` when given); ``seed`` makes it reproducible."""
    rng = random.Random(seed)
    model = get_user_model()
    people = [model.objects.create(username=f"ds{seed}-{i}") for i in range(users)]
    catalog = catalog or make_catalog()
    made = make_orders(rng, people[: max(users * 2 // 3, 1)], catalog, orders)  # some never pay
    make_trials(rng, people, catalog)
    make_debits(rng, people, catalog, debits)
    make_subscriptions(rng, people, made, tag=f"s{seed}-")
    return catalog
