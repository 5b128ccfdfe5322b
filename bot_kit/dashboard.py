"""bot_kit's part of the revenue dashboard: Telegram Stars subscriptions.

Registered from ``BotKitConfig.ready`` with :func:`billable.dashboard.register_subscriptions`.
A subscription is *paid through* ``[created_at, expires_at)`` (``expires_at`` is moved on by
every renewal; ``None`` means no end is known yet). At an instant ``t`` it is active when
``created_at < t <= expires_at``. Over the period, up to now:

* ``new`` — created in the period;
* ``churned`` — paid-through date passed in the period without a renewal moving it on;
* ``active_by_day`` — active at the end of each day, from the count at the start plus each
  day's new minus churned (three aggregate queries, whatever the number of days).

Rows whose ``expires_at`` is not after ``created_at`` never count. The bot filter keeps the
subscriptions with a payment whose order carries that ``metadata["bot_id"]``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from billable.dashboard import (
    BOT_ID_KEY,
    NO_BOT,
    Period,
    SubscriptionFigures,
    register_subscriptions,
)
from bot_kit.models import StarSubscription, TelegramPayment

SOURCE_NAME = "telegram_stars"


def subscriptions(period: Period) -> QuerySet[Any]:
    """The subscriptions the period's bot filter selects (only well-formed rows)."""
    rows = StarSubscription.objects.filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=F("created_at")))
    if period.bot is None:
        return rows
    payments = TelegramPayment.objects.filter(subscription=OuterRef("pk"))
    if period.bot == NO_BOT:
        return rows.exclude(Exists(payments.filter(order__metadata__has_key=BOT_ID_KEY)))
    return rows.filter(Exists(payments.filter(**{f"order__metadata__{BOT_ID_KEY}": period.bot})))


def active_at(rows: QuerySet[Any], instant: datetime) -> int:
    """How many of ``rows`` are active at ``instant``."""
    return rows.filter(Q(expires_at__isnull=True) | Q(expires_at__gte=instant),
                       created_at__lt=instant).count()


def _per_day(rows: QuerySet[Any], field: str, start: datetime, end: datetime) -> dict[date, int]:
    zone = timezone.get_current_timezone()
    if end <= start:
        return {}
    grouped = (rows.filter(**{f"{field}__gte": start, f"{field}__lt": end})
               .annotate(day=TruncDate(field, tzinfo=zone)).order_by()
               .values("day").annotate(n=Count("pk")).values_list("day", "n"))
    return dict(grouped)


def star_subscriptions(period: Period) -> SubscriptionFigures:
    """The dashboard figures of Telegram Stars subscriptions over ``period``."""
    rows = subscriptions(period)
    first, last = period.clamp(period.start), period.clamp(period.end)
    opening = active_at(rows, first)
    new = _per_day(rows, "created_at", first, last)
    churned = _per_day(rows, "expires_at", first, last)
    active, series = opening, []
    for day in period.days:
        active += new.get(day, 0) - churned.get(day, 0)
        series.append(active)
    return SubscriptionFigures(active_at_start=opening, active_at_end=active,
                               new=sum(new.values()), churned=sum(churned.values()),
                               active_by_day=tuple(series))


def register() -> None:
    """Contribute the subscription figures (called from ``BotKitConfig.ready``)."""
    register_subscriptions(SOURCE_NAME, star_subscriptions, label="Telegram Stars")


__all__ = ["SOURCE_NAME", "active_at", "register", "star_subscriptions", "subscriptions"]
