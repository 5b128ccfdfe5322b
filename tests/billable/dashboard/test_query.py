"""Dashboard input: defaults, the range cap, and bad input refused with stable codes."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from billable.exceptions import InvalidInput
from billable.selectors.dashboard import (
    MAX_DAYS,
    DateRangeTooLong,
    InvalidBotFilter,
    InvalidDate,
    InvalidDateRange,
    parse_query,
)

TODAY = date(2025, 3, 16)


def test_defaults_are_the_last_thirty_days_and_every_bot() -> None:
    query = parse_query(today=TODAY)
    assert (query.start, query.end, query.bot, query.days) == (date(2025, 2, 15), TODAY, None, 30)
    assert parse_query(start="2025-03-01", today=TODAY).end == date(2025, 3, 30)
    assert parse_query(end="2025-03-01").start == date(2025, 1, 31)
    assert parse_query(start="", end=" ", bot="", today=TODAY) == parse_query(today=TODAY)


def test_a_range_of_max_days_is_accepted_and_one_more_is_refused() -> None:
    assert parse_query(start="2024-01-01", end="2024-12-31").days == MAX_DAYS == 366
    with pytest.raises(DateRangeTooLong) as refused:
        parse_query(start="2023-12-31", end="2024-12-31")
    assert refused.value.code == "date_range_too_long"
    assert "367 days" in refused.value.message


def test_one_day_and_bot_values() -> None:
    query = parse_query(start="2025-03-09", end="2025-03-09", bot="123456789")
    assert (query.days, query.bot) == (1, "123456789")
    assert parse_query(bot="-", today=TODAY).bot == "-"


@pytest.mark.parametrize(("params", "error", "code"), [
    ({"start": "yesterday"}, InvalidDate, "invalid_date"),
    ({"start": "2025-13-01"}, InvalidDate, "invalid_date"),
    ({"end": "2025-02-30"}, InvalidDate, "invalid_date"),
    ({"end": "2025-3-1"}, InvalidDate, "invalid_date"),
    ({"end": "2025-03-01T00:00"}, InvalidDate, "invalid_date"),
    ({"start": "0001-01-01"}, InvalidDate, "invalid_date"),
    ({"end": "9999-12-31"}, InvalidDate, "invalid_date"),
    ({"start": "2025-03-01\x00"}, InvalidDate, "invalid_date"),
    ({"start": ["2025-03-01"]}, InvalidDate, "invalid_date"),
    ({"start": "2025-03-02", "end": "2025-03-01"}, InvalidDateRange, "invalid_date_range"),
    ({"start": "1900-01-01", "end": "9998-12-31"}, DateRangeTooLong, "date_range_too_long"),
    ({"bot": "x" * 65}, InvalidBotFilter, "invalid_bot_id"),
    ({"bot": "bot\n1"}, InvalidBotFilter, "invalid_bot_id"),
    ({"bot": " 12"}, InvalidBotFilter, "invalid_bot_id"),
    ({"bot": "\x00"}, InvalidBotFilter, "invalid_bot_id"),
])
def test_bad_input_raises_a_stable_code(params: dict[str, Any], error: type[Exception],
                                        code: str) -> None:
    with pytest.raises(error) as refused:
        parse_query(today=TODAY, **params)
    assert isinstance(refused.value, InvalidInput)
    assert refused.value.code == code


def test_the_edges_of_the_accepted_dates_build_periods() -> None:
    from billable.selectors.dashboard import period_of

    for start, end in (("1900-01-01", "1900-01-03"), ("9998-12-29", "9998-12-31")):
        period = period_of(parse_query(start=start, end=end))
        assert len(period.days) == 3 and period.start < period.end
    assert parse_query(start="9998-12-20").end == date(9998, 12, 31)
    assert parse_query(end="1900-01-05").start == date(1900, 1, 1)
