"""Dates of the simulated calendar: school census days, academic years, months of the period."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

_THURSDAY = 3


def _nth_thursday(year: int, month: int, n: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(_THURSDAY - first.weekday()) % 7 + 7 * (n - 1))


def census_days(year: int) -> list[tuple[dt.date, str]]:
    """The three school census days of a calendar year and their term labels."""
    return [
        (_nth_thursday(year, 1, 3), f"{year}-spring"),
        (_nth_thursday(year, 5, 3), f"{year}-summer"),
        (_nth_thursday(year, 10, 1), f"{year}-autumn"),
    ]


def last_census_before(day: dt.date) -> tuple[dt.date, str]:
    """The latest census day strictly before `day` (the snapshot's census)."""
    candidates = census_days(day.year - 1) + census_days(day.year)
    return max(c for c in candidates if c[0] < day)


def academic_year(day: dt.date) -> int:
    """The calendar year in which the academic year holding `day` began (1 September)."""
    return day.year if day.month >= 9 else day.year - 1


def year_group(date_of_birth: dt.date, day: dt.date) -> int:
    """National curriculum year on `day`: 0 is reception (aged 4 on the 31 August before), 13
    the last."""
    return academic_year(day) - academic_year(date_of_birth) - 5


def months(start: dt.date, end: dt.date) -> Iterator[tuple[int, dt.date, dt.date]]:
    """(month index, first day, last day) of each calendar month from `start` until `end`."""
    index = 0
    first = start
    while first < end:
        following = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
        yield index, first, min(following, end) - dt.timedelta(days=1)
        index += 1
        first = following
