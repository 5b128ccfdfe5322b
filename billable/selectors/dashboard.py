"""The revenue dashboard's figures, aggregated in the database (every figure is defined in
``docs/dashboard.md``).

:func:`build_dashboard` takes a :class:`DashboardQuery` (validated by :func:`parse_query`, see
:mod:`billable.selectors.dashboard_query`), runs a fixed number of ``GROUP BY`` queries whatever
the number of orders or days, and returns a :class:`Dashboard`. Money is never added across
currencies.

Days are counted in Django's current time zone; the bot filter is the ``metadata["bot_id"]``
string of orders and ledger rows (see :mod:`billable.dashboard`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db.models import (
    Count,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.fields.json import KT
from django.db.models.functions import TruncDate
from django.utils import timezone

from billable.dashboard import (
    BOT_ID_KEY,
    NO_BOT,
    Period,
    SubscriptionResult,
    collect_subscriptions,
)
from billable.models import Order, OrderItem, Transaction
from billable.selectors.dashboard_query import (
    MAX_DAYS,
    DashboardQuery,
    DateRangeTooLong,
    InvalidBotFilter,
    InvalidDate,
    InvalidDateRange,
    parse_query,
    period_of,
)

#: At most this many bot ids are offered by the bot filter.
MAX_BOTS = 100
#: Ledger action types of a trial claim (``TrialService.claim_trial``'s default source).
TRIAL_ACTIONS = ("trial_activation",)
#: DEBIT action types the engine writes when it closes batches: not consumption.
NOT_CONSUMPTION = ("expiration", "revocation")
STARS = "XTR"
RATE_PLACES = Decimal("0.0001")
MONEY = DecimalField(max_digits=20, decimal_places=2)
_FIAT = re.compile(r"^[A-Z]{3}$")
_SOLD = (Order.Status.PAID, Order.Status.REFUNDED)
ZERO = Decimal("0.00")


def money(value: Decimal | None) -> Decimal:
    """A summed amount with the two decimal places of the amount fields (SQLite sums
    decimals as floats; the places are restored here)."""
    return (value or ZERO).quantize(ZERO)


def rate(part: int | Decimal, whole: int | Decimal) -> Decimal | None:
    """``part / whole`` to four places; ``None`` when ``whole`` is zero."""
    if not whole:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(RATE_PLACES)


@dataclass(frozen=True)
class Amounts:
    """Money paid in one currency: gross, the part refunded since, and order counts."""

    gross: Decimal = ZERO
    refunded: Decimal = ZERO
    orders: int = 0
    refunded_orders: int = 0

    @property
    def net(self) -> Decimal:
        return self.gross - self.refunded


@dataclass(frozen=True)
class DayRevenue(Amounts):
    day: date = date.min


@dataclass(frozen=True)
class OfferRevenue(Amounts):
    sku: str = ""
    name: str = ""
    units: int = 0


@dataclass(frozen=True)
class CurrencyRevenue(Amounts):
    """Everything paid in one currency over the period."""

    currency: str = ""
    paying_users: int = 0
    by_day: tuple[DayRevenue, ...] = ()
    by_offer: tuple[OfferRevenue, ...] = ()

    @property
    def kind(self) -> str:
        """``stars`` (XTR), ``fiat`` (a three-letter ISO code) or ``other`` (internal units)."""
        return currency_kind(self.currency)

    @property
    def refund_rate(self) -> Decimal | None:
        """Refunded orders ÷ orders paid in the period."""
        return rate(self.refunded_orders, self.orders)

    @property
    def refunded_share(self) -> Decimal | None:
        """Refunded amount ÷ gross amount."""
        return rate(self.refunded, self.gross)


@dataclass(frozen=True)
class Conversion:
    """Users who claimed a trial in the period, and how many of them paid afterwards."""

    trial_users: int
    converted: int

    @property
    def rate(self) -> Decimal | None:
        return rate(self.converted, self.trial_users)


@dataclass(frozen=True)
class ProductConsumption:
    """Units of one product spent in the period (see docs/dashboard.md)."""

    product_key: str
    name: str
    units: int
    debits: int
    users: int


@dataclass(frozen=True)
class Dashboard:
    """Every figure of one dashboard page (or JSON answer, or CSV file)."""

    query: DashboardQuery
    period: Period
    timezone: str
    bots: tuple[str, ...]
    revenue: tuple[CurrencyRevenue, ...]
    paying_users: int
    conversion: Conversion
    consumption: tuple[ProductConsumption, ...]
    subscriptions: tuple[SubscriptionResult, ...]

    @property
    def orders(self) -> int:
        return sum(currency.orders for currency in self.revenue)

    @property
    def refunded_orders(self) -> int:
        return sum(currency.refunded_orders for currency in self.revenue)

    @property
    def refund_rate(self) -> Decimal | None:
        """Refunded orders ÷ orders, over every currency (counts, never amounts)."""
        return rate(self.refunded_orders, self.orders)

    @property
    def subscriptions_available(self) -> bool:
        return bool(self.subscriptions)


def currency_kind(currency: str) -> str:
    if currency == STARS:
        return "stars"
    return "fiat" if _FIAT.match(currency) else "other"


def _currency_order(currency: str) -> tuple[int, str]:
    return ({"stars": 0, "fiat": 1}.get(currency_kind(currency), 2), currency)


def sold_orders(period: Period, *, by_bot: bool = True) -> QuerySet[Order]:
    """Orders paid in the period with a positive total (refunded ones included), of the
    period's bot unless ``by_bot`` is false."""
    orders = Order.objects.filter(status__in=_SOLD, paid_at__gte=period.start,
                                  paid_at__lt=period.end, total_amount__gt=0)
    return orders.filter(period.bot_q()) if by_bot else orders


def _amounts(status_field: str, amount: Any) -> dict[str, Any]:
    refunded = Q(**{status_field: Order.Status.REFUNDED})
    return {"gross": Sum(amount, output_field=MONEY),
            "refunded": Sum(amount, filter=refunded, output_field=MONEY),
            "refunded_orders": Count("order_pk", filter=refunded, distinct=True),
            "orders": Count("order_pk", distinct=True)}


def _by_day(period: Period) -> dict[str, dict[date, DayRevenue]]:
    zone = timezone.get_current_timezone()
    rows: Any = (sold_orders(period).annotate(day=TruncDate("paid_at", tzinfo=zone),
                                              order_pk=F("pk"))
            .order_by().values("currency", "day").annotate(**_amounts("status", "total_amount")))
    found: dict[str, dict[date, DayRevenue]] = {}
    for row in rows:
        found.setdefault(row["currency"], {})[row["day"]] = DayRevenue(
            day=row["day"], gross=money(row["gross"]), refunded=money(row["refunded"]),
            orders=row["orders"], refunded_orders=row["refunded_orders"])
    return found


def _by_offer(period: Period) -> dict[str, list[OfferRevenue]]:
    lines = OrderItem.objects.filter(order__in=sold_orders(period)).annotate(
        order_pk=F("order_id"),
        line=ExpressionWrapper(F("price") * F("quantity"), output_field=MONEY))
    rows: Any = (lines.order_by().values("order__currency", "offer__sku", "offer__name")
            .annotate(units=Sum("quantity"), **_amounts("order__status", "line")))
    found: dict[str, list[OfferRevenue]] = {}
    for row in rows:
        found.setdefault(row["order__currency"], []).append(OfferRevenue(
            sku=row["offer__sku"], name=row["offer__name"], units=row["units"],
            gross=money(row["gross"]), refunded=money(row["refunded"]),
            orders=row["orders"], refunded_orders=row["refunded_orders"]))
    for offers in found.values():
        offers.sort(key=lambda offer: (-offer.gross, offer.sku))
    return found


def _revenue(period: Period) -> tuple[CurrencyRevenue, ...]:
    by_day, by_offer = _by_day(period), _by_offer(period)
    payers = dict(sold_orders(period).order_by().values("currency")
                  .annotate(users=Count("user", distinct=True)).values_list("currency", "users"))
    currencies = []
    for currency in sorted(by_day, key=_currency_order):
        days = by_day[currency]
        series = tuple(days.get(day) or DayRevenue(day=day) for day in period.days)
        currencies.append(CurrencyRevenue(
            currency=currency, paying_users=payers.get(currency, 0), by_day=series,
            by_offer=tuple(by_offer.get(currency, ())),
            gross=_total(d.gross for d in series), refunded=_total(d.refunded for d in series),
            orders=sum(d.orders for d in series),
            refunded_orders=sum(d.refunded_orders for d in series)))
    return tuple(currencies)


def _total(values: Iterable[Decimal]) -> Decimal:
    return sum(values, ZERO)


def _conversion(period: Period) -> Conversion:
    sold_after = Order.objects.filter(
        user_id=OuterRef("user_id"), status__in=_SOLD, total_amount__gt=0,
        paid_at__gt=OuterRef("created_at")).filter(period.bot_q())
    claims = (Transaction.objects.filter(
        direction=Transaction.Direction.CREDIT, action_type__in=TRIAL_ACTIONS,
        created_at__gte=period.start, created_at__lt=period.end).filter(period.bot_q())
        .annotate(paid_later=Exists(sold_after)))
    totals = claims.aggregate(
        trial_users=Count("user", distinct=True),
        converted=Count("user", distinct=True, filter=Q(paid_later=True)))
    return Conversion(trial_users=totals["trial_users"], converted=totals["converted"])


def consumption_rows(period: Period) -> QuerySet[Transaction]:
    """The ledger rows counted as consumption: DEBITs in the period, except the engine's own
    write-offs (expiry, revocation of a refunded order's batches, returned units)."""
    order_type = ContentType.objects.get_for_model(Order)
    return (Transaction.objects.filter(direction=Transaction.Direction.DEBIT,
                                       created_at__gte=period.start, created_at__lt=period.end)
            .exclude(action_type__in=NOT_CONSUMPTION).exclude(content_type=order_type)
            .filter(period.bot_q()))


def _consumption(period: Period) -> tuple[ProductConsumption, ...]:
    rows = (consumption_rows(period).order_by()
            .values("quota_batch__product__product_key", "quota_batch__product__name")
            .annotate(units=Sum("amount"), debits=Count("id"),
                      users=Count("user", distinct=True)))
    products = [ProductConsumption(product_key=row["quota_batch__product__product_key"] or "",
                                   name=row["quota_batch__product__name"], units=row["units"],
                                   debits=row["debits"], users=row["users"]) for row in rows]
    return tuple(sorted(products, key=lambda p: (-p.units, -p.debits, p.product_key)))


def bot_ids(period: Period) -> tuple[str, ...]:
    """The distinct ``metadata["bot_id"]`` values of the orders paid in the period (at most
    :data:`MAX_BOTS`), whatever the bot filter, plus the bot filtered on."""
    found = (sold_orders(period, by_bot=False).filter(metadata__has_key=BOT_ID_KEY)
             .annotate(bot=KT(f"metadata__{BOT_ID_KEY}")).order_by("bot")
             .values_list("bot", flat=True).distinct()[:MAX_BOTS])
    ids = {str(bot) for bot in found if bot is not None}
    if period.bot not in (None, NO_BOT):
        ids.add(str(period.bot))
    return tuple(sorted(ids))


def build_dashboard(query: DashboardQuery, *, now: datetime | None = None) -> Dashboard:
    """Every figure for ``query`` (read-only; a fixed number of aggregate queries)."""
    period = period_of(query, now=now)
    return Dashboard(
        query=query, period=period, timezone=timezone.get_current_timezone_name(),
        bots=bot_ids(period), revenue=_revenue(period),
        paying_users=sold_orders(period).aggregate(n=Count("user", distinct=True))["n"],
        conversion=_conversion(period), consumption=_consumption(period),
        subscriptions=tuple(collect_subscriptions(period)))


__all__ = [
    "MAX_DAYS",
    "NOT_CONSUMPTION",
    "TRIAL_ACTIONS",
    "Amounts",
    "Conversion",
    "CurrencyRevenue",
    "Dashboard",
    "DashboardQuery",
    "DateRangeTooLong",
    "DayRevenue",
    "InvalidBotFilter",
    "InvalidDate",
    "InvalidDateRange",
    "OfferRevenue",
    "ProductConsumption",
    "bot_ids",
    "build_dashboard",
    "consumption_rows",
    "currency_kind",
    "parse_query",
    "period_of",
    "rate",
    "sold_orders",
]
