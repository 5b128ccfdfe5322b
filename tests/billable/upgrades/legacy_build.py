"""Build a billable 0.2 database with the published 0.2 package, and record what 0.2 reads.

    python legacy_build.py <billable-0.2-dir> <database-url> <snapshot.json> <scenario>

``<billable-0.2-dir>`` holds the package as published on PyPI (``pip install --target DIR
--no-deps billable==0.2.0 future-uuid``); it goes first on ``sys.path``, so ``billable`` here
is 0.2, never this repository's 0.3. The schema comes from 0.2's own migrations and every row
from 0.2's own services. ``<database-url>`` is ``sqlite:////abs/path.sqlite3`` or
``postgres://user@host:port/name`` (the database must exist and be empty).

Scenarios:

* ``full`` — a catalog, identities, paid, pending, cancelled and refunded orders, consumption
  with an idempotency key, an exchange, a trial, a referral bonus and an expired batch.
* ``blocked`` — ``full`` plus three kinds of rows 0.2 accepted and 0.3 refuses: two orders
  confirmed with one payment id, an order line with quantity 0, a second referrer for a user.

The snapshot (JSON) holds the rows of every table and what 0.2's services answer: balances per
user and product, serialized orders, the idempotent consumption to replay later.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse


def configure(legacy_dir: str, database_url: str) -> None:
    sys.path.insert(0, legacy_dir)
    import django
    from django.conf import settings

    parsed = urlparse(database_url)
    if parsed.scheme.startswith("sqlite"):
        database = {"ENGINE": "django.db.backends.sqlite3", "NAME": parsed.path}
    else:
        database = {"ENGINE": "django.db.backends.postgresql",
                    "NAME": parsed.path.lstrip("/"), "USER": unquote(parsed.username or ""),
                    "PASSWORD": unquote(parsed.password or ""),
                    "HOST": parsed.hostname or "127.0.0.1", "PORT": str(parsed.port or 5432)}
    settings.configure(
        SECRET_KEY="legacy-build", USE_TZ=True, TIME_ZONE="UTC",
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes",
                        "django.contrib.sessions", "django.contrib.messages",
                        "django.contrib.admin", "billable"],
        DATABASES={"default": database}, DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()
    import billable

    if not str(Path(billable.__file__)).startswith(str(Path(legacy_dir))):
        raise SystemExit(f"billable was imported from {billable.__file__}, not {legacy_dir}")


def build_catalog() -> dict[str, Any]:
    from billable.models import Offer, OfferItem, Product

    credits = Product.objects.create(product_key="credits", name="Credits",
                                     product_type="quantity", metadata={"unit": "report"})
    premium = Product.objects.create(product_key="premium", name="Premium",
                                     product_type="period")
    coins = Product.objects.create(product_key="coins", name="Coins", product_type="quantity",
                                   is_currency=True)
    offers = {}
    for sku, price, currency, items in [
        ("credits_10", "9.99", "USD", [(credits, 10, "forever", None)]),
        ("premium_month", "5.00", "USD", [(premium, 1, "days", 30)]),
        ("premium_hour", "1.00", "USD", [(premium, 1, "hours", 1)]),
        ("coins_100", "1.00", "USD", [(coins, 100, "forever", None)]),
        ("credits_for_coins", "20", "COINS", [(credits, 5, "forever", None)]),
        ("trial_credits", "0", "USD", [(credits, 3, "forever", None)]),
        ("bundle", "12.50", "EUR", [(credits, 20, "forever", None), (premium, 1, "days", 7)]),
    ]:
        offer = Offer.objects.create(sku=sku, name=sku.replace("_", " ").title(), price=price,
                                     currency=currency, description=f"{sku} offer")
        for product, quantity, unit, value in items:
            OfferItem.objects.create(offer=offer, product=product, quantity=quantity,
                                     period_unit=unit, period_value=value)
        offers[sku.upper()] = offer
    return offers


def build_people() -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    from billable.models import ExternalIdentity

    users = {name: get_user_model().objects.create(username=name)
             for name in ("alice", "bob", "carol", "dave")}
    ExternalIdentity.objects.create(provider="telegram", external_id="1001",
                                    user=users["alice"], metadata={"username": "alice_tg"})
    ExternalIdentity.objects.create(provider="default", external_id="bob-crm-7",
                                    user=users["bob"])
    ExternalIdentity.objects.create(provider="n8n", external_id="orphan-1", user=None)
    return users


def build_activity(users: dict[str, Any], offers: dict[str, Any]) -> dict[str, Any]:
    from django.utils import timezone

    from billable.models import QuotaBatch, Referral, TrialHistory
    from billable.services import OrderService, TransactionService

    alice, bob, carol, dave = (users[n].pk for n in ("alice", "bob", "carol", "dave"))
    paid = OrderService.create_order(alice, [{"sku": "credits_10", "quantity": 2}],
                                     metadata={"source": "web"})
    OrderService.process_payment(paid.pk, payment_id="pay_1001", payment_method="stripe")
    month = OrderService.create_order(alice, [{"sku": "premium_month"}, {"sku": "bundle"}])
    OrderService.process_payment(month.pk, payment_id="pay_1002", payment_method="stripe")
    OrderService.create_order(bob, [{"sku": "credits_10"}])  # stays pending
    cancelled = OrderService.create_order(carol, [{"sku": "premium_month"}])
    OrderService.cancel_order(cancelled.pk, reason="changed mind")
    refunded = OrderService.create_order(bob, [{"sku": "coins_100"}])
    OrderService.process_payment(refunded.pk, payment_id="pay_2001")
    OrderService.refund_order(refunded.pk, reason="duplicate purchase")
    coins = OrderService.create_order(carol, [{"sku": "coins_100"}])
    OrderService.process_payment(coins.pk, payment_id="pay_3001", payment_method="stars")

    used = TransactionService.consume_quota(alice, "credits", amount=3, action_id="report-1",
                                            idempotency_key="rep-1", metadata={"report": 1})
    TransactionService.consume_quota(alice, "credits", amount=15, action_id="report-2")
    TransactionService.consume_quota(alice, "premium", action_type="premium_view")
    TransactionService.exchange(carol, offer=offers["CREDITS_FOR_COINS"], metadata={"via": "shop"})
    TransactionService.consume_quota(carol, "credits", amount=2, idempotency_key="carol-1")

    TrialHistory.objects.create(identity_type="telegram",
                                identity_hash=TrialHistory.generate_identity_hash(1002),
                                trial_plan_name="TRIAL_CREDITS")
    TransactionService.grant_offer(bob, offers["TRIAL_CREDITS"], source="trial_activation")
    referral = Referral.objects.create(referrer_id=alice, referee_id=dave,
                                       metadata={"campaign": "spring"})
    if referral.claim_bonus():
        TransactionService.grant_offer(alice, offers["TRIAL_CREDITS"], source="referral_bonus")
    TransactionService.grant_offer(dave, offers["COINS_100"], source="manual_grant",
                                   metadata={"by": "support"})

    hour = TransactionService.grant_offer(carol, offers["PREMIUM_HOUR"], source="manual_grant")
    QuotaBatch.objects.filter(pk=hour[0].pk).update(
        expires_at=timezone.now() - timedelta(days=1))
    TransactionService.expire_batches()
    return {"idempotent": {"username": "alice", "product_key": "CREDITS", "amount": 3,
                           "action_id": "report-1", "key": "rep-1",
                           "usage_id": used["usage_id"]}}


def build_blocked(users: dict[str, Any]) -> None:
    """Rows 0.2 accepted that 0.3's constraints refuse (SPEC §9 defects)."""
    from billable.models import Referral
    from billable.services import OrderService

    first = OrderService.create_order(users["bob"].pk, [{"sku": "credits_10"}])
    second = OrderService.create_order(users["carol"].pk, [{"sku": "credits_10"}])
    for order in (first, second):
        OrderService.process_payment(order.pk, payment_id="tg_charge_77",
                                     payment_method="telegram_stars")
    OrderService.create_order(users["dave"].pk, [{"sku": "premium_month", "quantity": 0}])
    Referral.objects.create(referrer=users["bob"], referee=users["dave"])


def snapshot(users: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    from rows import dump_rows, plain

    import billable.models as models
    from billable.models import Order, Product
    from billable.services import OrderService, TransactionService

    keys = sorted(k for k in Product.objects.values_list("product_key", flat=True) if k)
    return {
        "version": metadata.version("billable"),
        "users": {name: user.pk for name, user in users.items()},
        "rows": dump_rows(models),
        "balances": {name: {key: TransactionService.get_balance(user.pk, key) for key in keys}
                     for name, user in users.items()},
        "orders": plain([asyncio.run(OrderService.aserialize_order_to_dict(order))
                         for order in Order.objects.order_by("pk")]),
        **extra,
    }


def main(legacy_dir: str, database_url: str, out: str, scenario: str) -> None:
    configure(legacy_dir, database_url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    offers = build_catalog()
    users = build_people()
    extra = build_activity(users, offers)
    if scenario == "blocked":
        build_blocked(users)
    Path(out).write_text(json.dumps(snapshot(users, extra), indent=1, sort_keys=True))


if __name__ == "__main__":
    main(*sys.argv[1:5])
