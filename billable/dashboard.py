"""What other apps contribute to the revenue dashboard: subscription figures, by registration.

billable knows orders, trials and the ledger, but not subscriptions (bot_kit's Telegram Stars
subscriptions live in bot_kit, which billable never imports). An app that has subscriptions
registers a *source* from its ``AppConfig.ready``::

    register_subscriptions("telegram_stars", stars_source, label="Telegram Stars")

A source is a callable that receives the :class:`Period` the dashboard shows and returns
:class:`SubscriptionFigures` for it (read-only queries, aggregated in the database). With no
source registered the dashboard says "not available"; a source that raises is shown as failed
(logged), never as a 500. The figures are defined in ``docs/dashboard.md``.

The bot filter reaches sources as :attr:`Period.bot`: ``None`` (every bot), :data:`NO_BOT`
(records without a bot id) or one bot id (the ``metadata["bot_id"]`` string of orders).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q

logger = logging.getLogger("billable.dashboard")

#: The bot filter value that selects records without a ``bot_id`` (other channels).
NO_BOT = "-"
#: The metadata key that names the bot a record came from (see docs/dashboard.md).
BOT_ID_KEY = "bot_id"


@dataclass(frozen=True)
class Period:
    """The days the dashboard shows, as instants, with the bot filter.

    ``start`` is midnight of the first day and ``end`` midnight after the last day (exclusive),
    both aware, in the time zone the days are counted in. ``now`` is when the figures are
    taken: nothing after it has happened yet.
    """

    start: datetime
    end: datetime
    days: tuple[date, ...]
    now: datetime
    bot: str | None = None

    def clamp(self, instant: datetime) -> datetime:
        """``instant``, or ``now`` when it lies in the future."""
        return min(instant, self.now)

    def bot_q(self, field: str = "metadata") -> Q:
        """The bot filter as a ``Q`` on a JSON ``metadata`` field (``field`` may traverse
        relations, e.g. ``"order__metadata"``)."""
        if self.bot is None:
            return Q()
        if self.bot == NO_BOT:
            return ~Q(**{f"{field}__has_key": BOT_ID_KEY})
        return Q(**{f"{field}__{BOT_ID_KEY}": self.bot})


@dataclass(frozen=True)
class SubscriptionFigures:
    """Subscriptions over a :class:`Period` (definitions in docs/dashboard.md).

    ``active_by_day[i]`` is the number active at the end of ``period.days[i]`` (or now, for
    today and later days). ``active_at_end == active_at_start + new - churned``.
    """

    active_at_start: int
    active_at_end: int
    new: int
    churned: int
    active_by_day: tuple[int, ...]

    @property
    def churn_rate(self) -> Decimal | None:
        """Churned ÷ active at the start; ``None`` when nothing was active at the start."""
        if self.active_at_start == 0:
            return None
        return (Decimal(self.churned) / Decimal(self.active_at_start)).quantize(
            Decimal("0.0001"))


SubscriptionSource = Callable[[Period], SubscriptionFigures]


@dataclass(frozen=True)
class Contribution:
    """A registered subscription source."""

    name: str
    label: str
    source: SubscriptionSource


@dataclass(frozen=True)
class SubscriptionResult:
    """What one source answered: its figures, or ``None`` when it failed."""

    name: str
    label: str
    figures: SubscriptionFigures | None

    @property
    def failed(self) -> bool:
        return self.figures is None


_SOURCES: dict[str, Contribution] = {}


def register_subscriptions(name: str, source: SubscriptionSource, *,
                           label: str | None = None) -> None:
    """Add (or replace) the subscription source ``name``; call it from ``AppConfig.ready``."""
    _SOURCES[name] = Contribution(name, label or name, source)


def unregister_subscriptions(name: str) -> None:
    """Remove the source ``name`` (no error when unknown)."""
    _SOURCES.pop(name, None)


def subscription_sources() -> list[Contribution]:
    """The registered sources, in registration order."""
    return list(_SOURCES.values())


def collect_subscriptions(period: Period) -> list[SubscriptionResult]:
    """Ask every registered source; a source that raises gives a failed result (logged).

    Each source runs in a savepoint, so a failed query (a missing table) does not break an
    enclosing transaction (``ATOMIC_REQUESTS``) for the rest of the page.
    """
    results = []
    for contribution in subscription_sources():
        figures: Any
        try:
            with transaction.atomic():
                figures = contribution.source(period)
        except Exception:
            logger.exception("dashboard subscription source %s failed", contribution.name)
            figures = None
        results.append(SubscriptionResult(contribution.name, contribution.label, figures))
    return results


__all__ = [
    "BOT_ID_KEY",
    "NO_BOT",
    "Contribution",
    "Period",
    "SubscriptionFigures",
    "SubscriptionResult",
    "SubscriptionSource",
    "collect_subscriptions",
    "register_subscriptions",
    "subscription_sources",
    "unregister_subscriptions",
]
