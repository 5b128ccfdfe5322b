"""Period arithmetic: when a grant ends, how long a period may be, and re-chaining after refunds.

* :func:`period_end` adds an offer item's period to a start (calendar months, day clamped);
  :func:`bounded_end` is the same, but an end past :data:`FAR_FUTURE` is clamped there, so a
  grant never fails on date arithmetic however long the chain of purchases before it.
* ``span_allowed`` (defined with the catalog models) is the catalog and order rule: one period
  (an offer item's, or an order line's ``period × quantity`` for period products) lasts at
  most ``MAX_PERIOD_YEARS`` years.
* :func:`close_gaps` re-chains a user's queued periods after a refund: every queued period
  starts when the previous access ends (or now), so refunding one of two back-to-back
  purchases moves the later one forward instead of leaving a hole.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from billable.exceptions import InvalidInput
from billable.models import OfferItem, Product
from billable.models.catalog import MAX_PERIOD_YEARS, span_allowed

#: Latest end a period can have (clamped there: effectively "forever").
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
FOREVER = OfferItem.PeriodUnit.FOREVER


class PeriodItem(Protocol):
    """What the period rules need of an offer item or an order-line snapshot item."""

    period_unit: str
    period_value: int | None

    @property
    def product(self) -> Any: ...


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months; the day is clamped to the target month's last day."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def period_end(start: datetime, unit: str, value: int | None) -> datetime | None:
    """When a grant starting at ``start`` ends; ``None`` for ``forever`` or no value.

    Raises ``OverflowError`` / ``ValueError`` when the end is not a representable date (use
    :func:`bounded_end` where that must not fail).
    """
    if unit == FOREVER or not value:
        return None
    if unit == "hours":
        return start + timedelta(hours=value)
    if unit == "days":
        return start + timedelta(days=value)
    if unit == "months":
        return add_months(start, value)
    if unit == "years":
        return add_months(start, 12 * value)
    raise InvalidInput(f"Unknown period unit: {unit!r}")


def bounded_end(start: datetime, unit: str, value: int | None) -> datetime | None:
    """:func:`period_end`, clamped to :data:`FAR_FUTURE` instead of failing."""
    if start >= FAR_FUTURE:
        return None if unit == FOREVER or not value else FAR_FUTURE
    try:
        end = period_end(start, unit, value)
    except InvalidInput:
        raise  # an unknown unit is a catalog error, never "until 9999"
    except (OverflowError, ValueError):
        return FAR_FUTURE
    return min(end, FAR_FUTURE) if end is not None else None


def extends(item: PeriodItem) -> bool:
    """A finite period of a ``period`` product: it chains after the user's running access."""
    return (item.product.product_type == Product.ProductType.PERIOD
            and item.period_unit != FOREVER and bool(item.period_value))


class Timed(Protocol):
    valid_from: datetime
    expires_at: datetime | None
    pk: Any


T = TypeVar("T", bound=Timed)


def close_gaps(batches: Iterable[T], now: datetime) -> list[T]:
    """Move queued periods forward so access runs without a hole from now on; return the moved.

    ``batches`` are one user's remaining active batches of one period product ending after
    ``now``. Running ones stay; each queued one (``valid_from > now``) starts when the access
    before it ends, keeping its length. Periods only ever move earlier, never later.
    """
    moved = []
    cursor = now
    for batch in sorted(batches, key=lambda b: (b.valid_from, str(b.pk))):
        if batch.expires_at is None:
            continue
        if batch.valid_from > cursor:
            shift = batch.valid_from - cursor
            batch.valid_from -= shift
            batch.expires_at -= shift
            moved.append(batch)
        cursor = max(cursor, batch.expires_at)
    return moved


__all__ = ["FAR_FUTURE", "MAX_PERIOD_YEARS", "add_months", "bounded_end", "close_gaps",
           "extends", "period_end", "span_allowed"]
