"""grant_offer and exchange against the same work written as raw SQL (same driver, same run).

Also counts the SQL statements ``grant_offer`` issues for offers of 1, 2, 4 and 8 items
(transaction control — BEGIN, COMMIT, SAVEPOINT, RELEASE — not counted): the batched grant must
issue a constant number whatever the number of items.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

from bench.common import Recorder, credit, make_product, make_users, ratio, service
from bench.interleave import Plan, interleave, repeat
from bench.progress import Progress

ITEM_COUNTS = (1, 2, 4, 8)
CONTROL = ("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT", "ROLLBACK")


def make_offer(sku: str, products: list[Any], *, price: str = "0", currency: str = "USD") -> Any:
    """An offer with one item per product: quantity products ×10, period products 30 days."""
    from billable.models import Offer, OfferItem

    offer = Offer.objects.create(sku=sku, name=sku.title(), price=Decimal(price),
                                 currency=currency)
    for product in products:
        if product.product_type == "period":
            OfferItem.objects.create(offer=offer, product=product, quantity=1,
                                     period_unit="days", period_value=30)
        else:
            OfferItem.objects.create(offer=offer, product=product, quantity=10)
    return offer


def catalog(count: int) -> list[Any]:
    """``count`` products alternating quantity and period types."""
    return [make_product(f"GR_P{i}", product_type="period" if i % 2 else "quantity")
            for i in range(count)]


def statements(call: Any) -> int:
    """Data statements (not transaction control) executed by ``call()``."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        call()
    return sum(1 for q in captured.captured_queries
               if not q["sql"].lstrip().upper().startswith(CONTROL))


class RawLedger:
    """The grant and exchange transactions written by hand with Django's DB-API cursor."""

    def __init__(self) -> None:
        from django.db import connection

        from billable.models import QuotaBatch

        self.connection = connection
        self.id_field = QuotaBatch._meta.get_field("id")
        self.lock = " FOR UPDATE" if connection.vendor == "postgresql" else ""

    def _now(self) -> Any:
        from django.utils import timezone

        return timezone.now()

    def _dt(self, value: Any) -> Any:
        return self.connection.ops.adapt_datetimefield_value(value)

    def _uuid(self) -> Any:
        from billable.models.base import uuid7

        return self.id_field.get_db_prep_value(uuid7(), self.connection)

    def _grant(self, cursor: Any, user_id: Any, offer_id: Any, source: str) -> None:
        cursor.execute(
            "SELECT i.product_id, i.quantity, i.period_unit, i.period_value "
            "FROM billable_offer_items i WHERE i.offer_id = %s", [offer_id])
        now = self._now()
        batches, ledger = [], []
        for product_id, quantity, unit, value in cursor.fetchall():
            expires = now + timedelta(days=value) if unit == "days" else None
            batch_id = self._uuid()
            batches += [batch_id, user_id, product_id, offer_id, quantity, quantity,
                        self._dt(now), self._dt(expires), "ACTIVE", self._dt(now)]
            ledger += [self._uuid(), user_id, batch_id, quantity, "CREDIT", source, "{}",
                       self._dt(now)]
        rows = len(batches) // 10
        cursor.execute(
            "INSERT INTO billable_quota_batches (id, user_id, product_id, source_offer_id, "
            "initial_quantity, remaining_quantity, valid_from, expires_at, state, created_at) "
            "VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * rows), batches)
        cursor.execute(
            "INSERT INTO billable_transactions (id, user_id, quota_batch_id, amount, direction, "
            "action_type, metadata, created_at) VALUES "
            + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * rows), ledger)

    def grant(self, user_id: Any, offer_id: Any) -> None:
        from django.db import transaction

        with transaction.atomic(), self.connection.cursor() as cursor:
            self._grant(cursor, user_id, offer_id, "purchase")

    def exchange(self, user_id: Any, offer_id: Any) -> None:
        """Spend ``price`` units of the currency product FIFO, then grant the offer."""
        from django.db import transaction

        with transaction.atomic(), self.connection.cursor() as cursor:
            cursor.execute("SELECT o.price, p.id FROM billable_offers o JOIN billable_products p "
                           "ON p.product_key = o.currency WHERE o.id = %s AND o.is_active "
                           "AND p.is_active AND p.is_currency", [offer_id])
            price, currency_id = cursor.fetchone()
            now = self._dt(self._now())
            cursor.execute(
                "SELECT id, remaining_quantity FROM billable_quota_batches WHERE user_id = %s "
                "AND product_id = %s AND state = 'ACTIVE' AND remaining_quantity > 0 "
                "AND valid_from <= %s AND (expires_at IS NULL OR expires_at > %s) "
                "ORDER BY created_at, id" + self.lock, [user_id, currency_id, now, now])
            batch_id, _ = cursor.fetchone()  # the bench wallet holds one large batch
            cursor.execute("UPDATE billable_quota_batches SET remaining_quantity = "
                           "remaining_quantity - %s WHERE id = %s", [int(price), batch_id])
            cursor.execute(
                "INSERT INTO billable_transactions (id, user_id, quota_batch_id, amount, "
                "direction, action_type, object_id, metadata, created_at) VALUES "
                "(%s, %s, %s, %s, 'DEBIT', 'exchange', %s, %s, %s)",
                [self._uuid(), user_id, batch_id, int(price), str(offer_id),
                 json.dumps({"price": int(price)}), now])
            self._grant(cursor, user_id, offer_id, "exchange")


def run(rec: Recorder, *, quick: bool) -> None:
    """Statement counts, then service vs raw SQL for grant_offer and exchange, interleaved."""
    grant, exchange = service("grant_offer"), service("exchange")
    plan = Plan.for_run(quick=quick)
    products = catalog(max(ITEM_COUNTS))
    user, raw_user = make_users(2, prefix="grants")
    raw = RawLedger()
    with Progress(f"grants [{rec.backend}]", total=len(ITEM_COUNTS) + 2 * plan.rounds) as bar:
        counted = []
        for items in ITEM_COUNTS:
            offer = make_offer(f"GR_PACK_{items}", products[:items])
            counted.append(statements(lambda o=offer: grant(user.id, o)))
            rec.metric(f"grant_offer statements, {items} item(s)", counted[-1], "statements")
            bar.tick()
        rec.series["grant_statements"] = {"items": list(ITEM_COUNTS), "statements": counted}
        rec.target(f"grant_offer statements at {ITEM_COUNTS[-1]} items / at 1 item",
                   value=ratio(counted[-1], counted[0]), required=1.0, at_most=True,
                   why="all items of an offer are written with one bulk INSERT per table")
        pack = make_offer("GR_PACK_RATE", products[:2])
        granting = interleave({
            "grant_offer (2 items): service": repeat(lambda: grant(user.id, pack)),
            "grant_offer (2 items): raw SQL": repeat(lambda: raw.grant(raw_user.id, pack.id)),
        }, plan, tick=bar.tick)
        coins = make_product("GR_COINS", is_currency=True)
        credit(user, coins, 10**9)
        credit(raw_user, coins, 10**9)
        shop = make_offer("GR_SHOP", products[:1], price="5", currency="GR_COINS")
        exchanging = interleave({
            "exchange (price 5, 1 item): service": repeat(lambda: exchange(user.id, offer=shop)),
            "exchange (price 5, 1 item): raw SQL": repeat(
                lambda: raw.exchange(raw_user.id, shop.id)),
        }, plan, tick=bar.tick)
    for comparison in (granting, exchanging):
        rec.rates(comparison)
        service_side, raw_side = comparison.rates
        rec.ratio(f"{service_side.split(':')[0]}: service / raw SQL", comparison, service_side,
                  raw_side)
