"""The dashboard's figures recomputed the straightforward way: load every row, loop in Python.

Written from the definitions in docs/dashboard.md, independently of
``billable.selectors.dashboard`` (no shared helpers), and shaped like
``billable.selectors.dashboard_export.dashboard_data`` so the two can be compared whole.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType

from billable.models import Order, Transaction

SOLD = ("paid", "refunded")
CENT = Decimal("0.01")


def _bot_matches(metadata: Any, bot: str | None) -> bool:
    has = isinstance(metadata, dict) and "bot_id" in metadata
    if bot is None:
        return True
    if bot == "-":
        return not has
    return has and metadata["bot_id"] == bot


def _rate(part: Any, whole: Any) -> str | None:
    if not whole:
        return None
    return str((Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001")))


def _money(value: Decimal) -> str:
    return str(Decimal(value).quantize(CENT))


def _amounts(rows: list[tuple[Decimal, bool]], orders: set[Any], refunded: set[Any]
             ) -> dict[str, Any]:
    gross = sum((amount for amount, _ in rows), Decimal(0))
    back = sum((amount for amount, was_refunded in rows if was_refunded), Decimal(0))
    return {"gross": _money(gross), "refunded": _money(back), "net": _money(gross - back),
            "orders": len(orders), "refunded_orders": len(refunded)}


class Reference:
    """Figures for the days ``start``–``end`` (inclusive) counted in ``zone``."""

    def __init__(self, start: date, end: date, zone: tzinfo, bot: str | None,
                 now: datetime) -> None:
        self.start, self.end, self.zone, self.bot, self.now = start, end, zone, bot, now
        self.days = [start + timedelta(days=i) for i in range((end - start).days + 1)]

    def local_day(self, instant: datetime) -> date:
        return instant.astimezone(self.zone).date()

    def in_range(self, instant: datetime | None) -> bool:
        return instant is not None and self.start <= self.local_day(instant) <= self.end

    def sold(self) -> list[Order]:
        return [o for o in Order.objects.prefetch_related("items__offer")
                if o.status in SOLD and o.total_amount > 0 and self.in_range(o.paid_at)
                and _bot_matches(o.metadata, self.bot)]

    def revenue(self) -> dict[str, Any]:
        by_currency: dict[str, list[Order]] = defaultdict(list)
        for order in self.sold():
            by_currency[order.currency].append(order)
        result = {}
        for currency, orders in by_currency.items():
            whole = _amounts([(o.total_amount, o.status == "refunded") for o in orders],
                             {o.pk for o in orders},
                             {o.pk for o in orders if o.status == "refunded"})
            by_day = []
            for day in self.days:
                same = [o for o in orders if self.local_day(o.paid_at) == day]  # type: ignore
                by_day.append({"day": day.isoformat(), **_amounts(
                    [(o.total_amount, o.status == "refunded") for o in same], {o.pk for o in same},
                    {o.pk for o in same if o.status == "refunded"})})
            result[currency] = {
                "kind": "stars" if currency == "XTR" else "fiat", **whole,
                "refund_rate": _rate(whole["refunded_orders"], whole["orders"]),
                "refunded_share": _rate(Decimal(whole["refunded"]), Decimal(whole["gross"])),
                "paying_users": len({o.user_id for o in orders}),
                "by_day": by_day, "by_offer": self._offers(orders),
            }
        return result

    def _offers(self, orders: list[Order]) -> list[dict[str, Any]]:
        lines: dict[str, list[Any]] = defaultdict(list)
        for order in orders:
            for item in order.items.all():
                lines[item.offer.sku].append((order, item))
        offers = []
        for sku, pairs in lines.items():
            amounts = _amounts([(i.price * i.quantity, o.status == "refunded") for o, i in pairs],
                               {o.pk for o, _ in pairs},
                               {o.pk for o, _ in pairs if o.status == "refunded"})
            offers.append({"sku": sku, "name": pairs[0][1].offer.name,
                           "units": sum(i.quantity for _, i in pairs), **amounts})
        return sorted(offers, key=lambda o: (-Decimal(o["gross"]), o["sku"]))

    def totals(self) -> dict[str, Any]:
        sold = self.sold()
        refunded = [o for o in sold if o.status == "refunded"]
        return {"paying_users": len({o.user_id for o in sold}), "orders": len(sold),
                "refunded_orders": len(refunded), "refund_rate": _rate(len(refunded), len(sold))}

    def conversion(self) -> dict[str, Any]:
        claims = [t for t in Transaction.objects.all()
                  if t.direction == "CREDIT" and t.action_type == "trial_activation"
                  and self.in_range(t.created_at) and _bot_matches(t.metadata, self.bot)]
        payments = [o for o in Order.objects.all()
                    if o.status in SOLD and o.total_amount > 0 and o.paid_at is not None
                    and _bot_matches(o.metadata, self.bot)]
        users = {t.user_id for t in claims}
        converted = {t.user_id for t in claims
                     if any(o.user_id == t.user_id and o.paid_at > t.created_at  # type: ignore
                            for o in payments)}
        return {"trial_users": len(users), "converted": len(converted),
                "rate": _rate(len(converted), len(users))}

    def consumption(self) -> list[dict[str, Any]]:
        order_type = ContentType.objects.get_for_model(Order).pk
        per_product: dict[Any, list[Transaction]] = defaultdict(list)
        for row in Transaction.objects.select_related("quota_batch__product"):
            if (row.direction == "DEBIT" and self.in_range(row.created_at)
                    and row.action_type not in ("expiration", "revocation")
                    and row.content_type_id != order_type
                    and _bot_matches(row.metadata, self.bot)):
                per_product[row.quota_batch.product].append(row)
        lines = [{"product_key": product.product_key, "name": product.name,
                  "units": sum(r.amount for r in rows), "debits": len(rows),
                  "users": len({r.user_id for r in rows})}
                 for product, rows in per_product.items()]
        return sorted(lines, key=lambda line: (-line["units"], -line["debits"],
                                               line["product_key"]))

    def subscriptions(self) -> dict[str, Any]:
        from bot_kit.models import StarSubscription

        subs = []
        for sub in StarSubscription.objects.prefetch_related("payments__order"):
            if sub.expires_at is not None and sub.expires_at <= sub.created_at:
                continue
            metas = [p.order.metadata for p in sub.payments.all() if p.order is not None]
            if self.bot == "-" and any("bot_id" in m for m in metas):
                continue
            if self.bot not in (None, "-") and not any(m.get("bot_id") == self.bot
                                                       for m in metas):
                continue
            subs.append(sub)

        def active(instant: datetime) -> int:
            return sum(1 for s in subs if s.created_at < instant
                       and (s.expires_at is None or s.expires_at >= instant))

        def midnight(day: date) -> datetime:
            return datetime.combine(day, time.min, self.zone)

        first = min(midnight(self.start), self.now)
        last = min(midnight(self.end + timedelta(days=1)), self.now)
        series = [{"day": day.isoformat(),
                   "active": active(min(midnight(day + timedelta(days=1)), self.now))}
                  for day in self.days]
        new = sum(1 for s in subs if first <= s.created_at < last)
        churned = sum(1 for s in subs if s.expires_at is not None and first <= s.expires_at < last)
        opening = active(first)
        return {"name": "telegram_stars", "label": "Telegram Stars", "available": True,
                "active_at_start": opening, "active_at_end": active(last), "new": new,
                "churned": churned, "churn_rate": _rate(churned, opening),
                "active_by_day": series}
