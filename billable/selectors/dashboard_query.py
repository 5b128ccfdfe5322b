"""The revenue dashboard's input: which days and which bot, validated.

:func:`parse_query` turns user input (the admin's form, the API's query string) into a
:class:`DashboardQuery`, or raises an :class:`~billable.exceptions.InvalidInput` subclass with a
stable code. A range covers at most :data:`MAX_DAYS` days, which bounds the cost of a page.
:func:`period_of` turns a query into instants of the current time zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.utils import timezone

from billable.dashboard import NO_BOT, Period
from billable.exceptions import InvalidInput

#: The longest range a dashboard may cover, in days (inclusive of both ends).
MAX_DAYS = 366
#: The range shown when none is asked for: the last 30 days, today included.
DEFAULT_DAYS = 30
MAX_BOT_ID_LENGTH = 64
#: The dates a dashboard may show (instants around them stay representable in every zone).
EARLIEST = date(1900, 1, 1)
LATEST = date(9998, 12, 31)


class InvalidDate(InvalidInput):
    """A dashboard date is not an ISO date (``YYYY-MM-DD``) or lies outside what can be shown."""

    code = "invalid_date"
    default_message = "Dates must be written YYYY-MM-DD"


class InvalidDateRange(InvalidInput):
    """The dashboard's start date lies after its end date."""

    code = "invalid_date_range"
    default_message = "The start date must not be after the end date"


class DateRangeTooLong(InvalidInput):
    """The dashboard's range covers more than :data:`MAX_DAYS` days."""

    code = "date_range_too_long"
    default_message = f"A dashboard covers at most {MAX_DAYS} days"


class InvalidBotFilter(InvalidInput):
    """The bot filter is not a bot id (blank, too long, or not printable text)."""

    code = "invalid_bot_id"
    default_message = "Invalid bot id"


@dataclass(frozen=True)
class DashboardQuery:
    """Which days (inclusive) and which bot (``None``: all; :data:`NO_BOT`: none) to show."""

    start: date
    end: date
    bot: str | None = None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def _date(value: Any, field: str) -> date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = value.isoformat()
    text = str(value).strip()
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidDate(f"{field} must be a date written YYYY-MM-DD", field=field) from None
    if not EARLIEST <= day <= LATEST:
        raise InvalidDate(f"{field} must lie between {EARLIEST} and {LATEST}", field=field)
    return day


def _bot(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = str(value)
    if text != text.strip() or len(text) > MAX_BOT_ID_LENGTH or not text.isprintable():
        raise InvalidBotFilter(f"bot must be a bot id of at most {MAX_BOT_ID_LENGTH} printable "
                               f"characters, or '{NO_BOT}' for records without one")
    return text


def parse_query(*, start: Any = None, end: Any = None, bot: Any = None,
                today: date | None = None) -> DashboardQuery:
    """Validate dashboard input; missing dates default to the last :data:`DEFAULT_DAYS` days
    (ending ``end``, or today in the current time zone)."""
    first, last = _date(start, "start"), _date(end, "end")
    span = timedelta(days=DEFAULT_DAYS - 1)
    if last is None:
        last = min(first + span, LATEST) if first else (today or timezone.localdate())
    if first is None:
        first = max(last - span, EARLIEST)
    if first > last:
        raise InvalidDateRange(f"start ({first}) is after end ({last})")
    if (last - first).days + 1 > MAX_DAYS:
        raise DateRangeTooLong(f"The range {first} – {last} covers {(last - first).days + 1} "
                               f"days; a dashboard covers at most {MAX_DAYS}")
    return DashboardQuery(first, last, _bot(bot))


def period_of(query: DashboardQuery, *, now: datetime | None = None) -> Period:
    """The query's days as aware instants in the current time zone."""
    zone = timezone.get_current_timezone()
    days = tuple(query.start + timedelta(days=i) for i in range(query.days))
    first, after = (timezone.make_aware(datetime.combine(day, time.min), zone)
                    for day in (query.start, query.end + timedelta(days=1)))
    return Period(start=first, end=after, days=days, now=now or timezone.now(),
                  bot=query.bot)


__all__ = [
    "DEFAULT_DAYS",
    "EARLIEST",
    "LATEST",
    "MAX_BOT_ID_LENGTH",
    "MAX_DAYS",
    "DashboardQuery",
    "DateRangeTooLong",
    "InvalidBotFilter",
    "InvalidDate",
    "InvalidDateRange",
    "parse_query",
    "period_of",
]
