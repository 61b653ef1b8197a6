"""Dutch working days (protocol.workdays): the calendar hub deadlines and the desk share."""

from __future__ import annotations

import datetime

import pytest

from protocol.workdays import (
    AMSTERDAM,
    MAX_SPAN_DAYS,
    add_working_days,
    is_working_day,
    working_days_between,
)


def at(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime.datetime(year, month, day, hour, tzinfo=AMSTERDAM).timestamp())


def test_weekends_and_dutch_public_holidays_are_not_working_days() -> None:
    assert is_working_day(datetime.date(2026, 1, 2))  # a Friday
    assert not is_working_day(datetime.date(2026, 1, 3))  # Saturday
    assert not is_working_day(datetime.date(2026, 1, 1))  # New Year's Day
    assert not is_working_day(datetime.date(2026, 4, 27))  # King's Day, a Monday


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        (at(2026, 1, 5, 9), at(2026, 1, 5, 21), 0.5),  # within a Monday
        (at(2026, 1, 9, 12), at(2026, 1, 12, 12), 1.0),  # Friday noon to Monday noon
        (at(2026, 1, 3), at(2026, 1, 5), 0.0),  # a weekend
        (at(2025, 12, 24), at(2025, 12, 29), 1.0),  # Christmas and Boxing Day left out
        (at(2026, 3, 27, 12), at(2026, 3, 30, 12), 1.0),  # over the move to summer time
        (at(2026, 1, 5), at(2026, 1, 5), 0.0),
        (at(2026, 1, 6), at(2026, 1, 5), 0.0),  # an end before the start counts nothing
    ],
)
def test_working_days_between_counts_wall_clock_time_on_working_days(
    start: int, end: int, days: float
) -> None:
    assert working_days_between(start, end) == pytest.approx(days)


@pytest.mark.parametrize("days", [1, 2, 5, 10, 30])
@pytest.mark.parametrize("start", [at(2026, 1, 9, 15), at(2026, 4, 24, 8), at(2025, 12, 23, 17)])
def test_counting_is_the_inverse_of_adding(start: int, days: int) -> None:
    assert working_days_between(start, add_working_days(start, days)) == pytest.approx(days)


def test_a_span_longer_than_the_limit_is_refused() -> None:
    start = at(2026, 1, 5)
    with pytest.raises(ValueError, match="not counted"):
        working_days_between(start, start + (MAX_SPAN_DAYS + 1) * 86_400)
