"""Dutch working days: Monday to Friday in Europe/Amsterdam, without Dutch public holidays.

The one calendar of the network: the hub's referral deadlines (``hub.deadlines``) count
on it, and the coordinator's desk measures how long referral steps took on it. Days are
wall-clock days (a daylight-saving day counts as one day); time on a weekend or a public
holiday does not count. Pure: every function takes the instants it compares.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import holidays

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
MAX_SPAN_DAYS = 40_000  # about a century: longer spans are refused, not walked


@cache
def _dutch_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("NL", years=year))


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _dutch_holidays(day.year)


def add_working_days(since: int, days: int) -> int:
    """The instant ``days`` working days (of wall-clock time) after ``since``."""
    cursor = datetime.fromtimestamp(since, AMSTERDAM)
    remaining = timedelta(days=days)
    while True:
        midnight = datetime.combine(cursor.date() + timedelta(days=1), time(0), AMSTERDAM)
        if is_working_day(cursor.date()):
            if remaining <= midnight - cursor:
                return int((cursor + remaining).astimezone(UTC).timestamp())
            remaining -= midnight - cursor
        cursor = midnight


def working_days_between(start: int, end: int) -> float:
    """How many working days (of wall-clock time) passed from ``start`` to ``end``.

    The inverse of :func:`add_working_days`: ``working_days_between(t, add_working_days(t,
    n)) == n``. Zero when ``end`` is not after ``start``; ValueError for a span of more
    than :data:`MAX_SPAN_DAYS` calendar days.
    """
    if end <= start:
        return 0.0
    if end - start > MAX_SPAN_DAYS * 86_400:
        raise ValueError(f"a span of more than {MAX_SPAN_DAYS} days is not counted")
    cursor = datetime.fromtimestamp(start, AMSTERDAM)
    until = datetime.fromtimestamp(end, AMSTERDAM)
    counted = timedelta()
    while cursor < until:
        midnight = datetime.combine(cursor.date() + timedelta(days=1), time(0), AMSTERDAM)
        stop = min(midnight, until)
        if is_working_day(cursor.date()):
            counted += stop - cursor
        cursor = midnight
    return counted / timedelta(days=1)
