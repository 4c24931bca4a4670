"""Named time intervals of the ``notifications:`` section, as Alertmanager's
``time_intervals``: ``times``, ``weekdays``, ``days_of_month``, ``months``, ``years`` and a
``location``, parsed at spec load with Alertmanager's rules and refusals.

Routes name them in ``mute_time_intervals`` and ``active_time_intervals``
(:mod:`config.notifications`); the dispatcher asks :meth:`TimeInterval.contains`
with the wall clock (:mod:`operators.notify`).
"""

from __future__ import annotations

import calendar
import re
import zoneinfo
from datetime import datetime
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field, field_validator, model_validator

from riffle.config.base import Strict

WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
"""Alertmanager's week: Sunday is day 0, and a weekday range runs Sunday → Saturday."""
MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)


_HHMM = re.compile(r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")
_SEXAGESIMAL = " (YAML reads an unquoted 1:5 as the number 65: quote ranges, '1:5')"


def _clock(value: Any) -> Any:
    """``"HH:MM"`` (``"24:00"`` ends a day) → minutes since midnight, as Alertmanager."""
    text = value if isinstance(value, str) else ""
    if _HHMM.match(text) is None:
        hint = " (YAML reads an unquoted 22:00 as a number: quote it)" if text != value else ""
        raise ValueError(f'{value!r} is not a quoted time of day "HH:MM" (00:00 to 24:00){hint}')
    hours, _, minutes = text.partition(":")
    return int(hours) * 60 + int(minutes)


Minute = Annotated[int, BeforeValidator(_clock)]


class TimeRange(Strict):
    """``[start, end)`` in minutes of the local day (``end`` may be ``"24:00"``, 1440).

    Spelled ``start_time``/``end_time`` as in Alertmanager (``start``/``end`` also work).
    A range that crosses midnight is refused, as in Alertmanager: write two."""

    start: Minute = Field(validation_alias=AliasChoices("start_time", "start"))
    end: Minute = Field(validation_alias=AliasChoices("end_time", "end"))

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.end <= self.start:
            raise ValueError(
                f"a time range ends after it starts: {_hhmm(self.start)}-{_hhmm(self.end)} is"
                f" empty or crosses midnight (write {_hhmm(self.start)}-24:00 and"
                f" 00:00-{_hhmm(self.end)})"
            )
        return self

    def contains(self, minute: int) -> bool:
        """Whether the minute of the day ``minute`` is in ``[start, end)``."""
        return self.start <= minute < self.end


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _members(value: Any, what: str) -> tuple[str, str]:
    """An item ``x`` or ``x:y`` (lower-cased) → its two ends, as Alertmanager splits it."""
    scalar = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    if not scalar:
        raise ValueError(f"{value!r} is not a {what} or a {what} range like a:b")
    parts = str(value).lower().split(":")
    if len(parts) > 2:
        raise ValueError(f"{value!r}: a range is first:last")
    return parts[0], parts[-1]


def _number(text: str, original: Any, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{original!r}: {text!r} is not a valid {what}") from None


def _weekday_range(value: Any) -> tuple[int, int]:
    """``monday`` or ``monday:friday`` → (1, 5); Sunday is 0 and a range runs Sunday →
    Saturday, as in Alertmanager (``saturday:sunday`` is refused: list both days)."""
    ends = _members(value, "weekday")
    days: list[int] = []
    for name in ends:
        if name not in WEEKDAYS:
            raise ValueError(f"{value!r}: {name!r} is not a weekday ({', '.join(WEEKDAYS)})")
        days.append(WEEKDAYS.index(name))
    if days[0] > days[1]:
        raise ValueError(
            f"{value!r}: a weekday range runs from Sunday towards Saturday (list the days)"
        )
    return days[0], days[1]


def _day_of_month_range(value: Any) -> tuple[int, int]:
    """``1``, ``-1`` (the last day), ``1:5``, ``-3:-1``, ``15:-1`` → the two ends; refused as
    Alertmanager refuses: 0 or beyond ±31, a negative start with a positive end, and a
    range empty in every month (ends compared as in a 28-day month)."""
    ends = _members(value, "day of the month")
    begin, end = (_number(x, value, "day of the month") for x in ends)
    for day in (begin, end):
        if day == 0 or not -31 <= day <= 31:
            hint = _SEXAGESIMAL if isinstance(value, int) else ""
            raise ValueError(f"{day} is not a valid day of the month: 1..31 or -31..-1{hint}")
    if begin < 0 < end:
        raise ValueError(f"{value!r}: the end day must be negative if the start day is")
    if (28 + begin if begin < 0 else begin) > (28 + end if end < 0 else end):
        raise ValueError(f"{value!r}: end day {end} is always before start day {begin}")
    return begin, end


def _month_range(value: Any) -> tuple[int, int]:
    """``march``, ``3``, ``january:march``, ``1:3`` → (first, last) with January 1."""
    ends = _members(value, "month")
    months = [
        MONTHS.index(x) + 1 if x in MONTHS else _number(x, value, "month (a name or 1..12)")
        for x in ends
    ]
    for month in months:
        if not 1 <= month <= 12:
            hint = _SEXAGESIMAL if isinstance(value, int) else ""
            raise ValueError(f"{value!r}: {month} is not a month (1..12){hint}")
    if months[0] > months[1]:
        raise ValueError(
            f"{value!r}: end month {MONTHS[months[1] - 1]} is before start month"
            f" {MONTHS[months[0] - 1]}"
        )
    return months[0], months[1]


def _year_range(value: Any) -> tuple[int, int]:
    """``2026`` or ``2026:2027`` → (first, last)."""
    begin, end = (_number(x, value, "year") for x in _members(value, "year"))
    if begin > end:
        raise ValueError(f"{value!r}: end year {end} is before start year {begin}")
    return begin, end


WeekdayRange = Annotated[tuple[int, int], BeforeValidator(_weekday_range)]
DayOfMonthRange = Annotated[tuple[int, int], BeforeValidator(_day_of_month_range)]
MonthRange = Annotated[tuple[int, int], BeforeValidator(_month_range)]
YearRange = Annotated[tuple[int, int], BeforeValidator(_year_range)]


def _day_in(day: int, days_in_month: int, span: tuple[int, int]) -> bool:
    """Alertmanager's day-of-month test: negative ends count back from the month's end
    (-1 is its last day); a start beyond the month never matches."""
    begin, end = (d if d > 0 else days_in_month + d + 1 for d in span)
    return begin <= day <= end


class TimePeriod(Strict):
    """One of Alertmanager's ``time_intervals`` entries: it contains an instant when every
    field given holds in ``time_zone`` (``location``, IANA; default UTC); a field holds
    when any of its entries does; a field left out holds always.

    ``times`` compare the local minute of the day (``end`` excluded); ``weekdays`` run
    Sunday (0) to Saturday (6); ``days_of_month`` may count back from the month's end;
    ``months`` take names or numbers; all ranges ``first:last`` include both ends."""

    time_zone: str = Field("UTC", validation_alias=AliasChoices("location", "time_zone"))
    times: list[TimeRange] | None = None
    weekdays: list[WeekdayRange] | None = None
    days_of_month: list[DayOfMonthRange] | None = None
    months: list[MonthRange] | None = None
    years: list[YearRange] | None = None

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin)") from exc
        return value

    def contains(self, now_ms: int) -> bool:
        """Whether the wall-clock instant ``now_ms`` (Unix ms) falls in the period."""
        local = datetime.fromtimestamp(now_ms // 1000, tz=zoneinfo.ZoneInfo(self.time_zone))
        minute = local.hour * 60 + local.minute
        if self.times is not None and not any(r.contains(minute) for r in self.times):
            return False
        if self.days_of_month is not None:
            length = calendar.monthrange(local.year, local.month)[1]
            if not any(_day_in(local.day, length, span) for span in self.days_of_month):
                return False
        weekday = (local.weekday() + 1) % 7
        checks = (
            (self.months, local.month),
            (self.weekdays, weekday),
            (self.years, local.year),
        )
        return all(
            spans is None or any(a <= actual <= b for a, b in spans) for spans, actual in checks
        )


class TimeInterval(TimePeriod):
    """A named interval, as Alertmanager's: either ``time_intervals`` (a list of
    :class:`TimePeriod`; the interval contains an instant any of them contains — none:
    never) or, as a shorthand for one period, its fields directly (none: always)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    time_intervals: list[TimePeriod] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> TimeInterval:
        flat = self.model_fields_set & set(TimePeriod.model_fields)
        if self.time_intervals is not None and flat:
            raise ValueError(
                f"give either time_intervals or {', '.join(sorted(flat))} directly, not both"
            )
        return self

    def contains(self, now_ms: int) -> bool:
        """Whether the wall-clock instant ``now_ms`` (Unix ms) falls in the interval."""
        if self.time_intervals is None:
            return super().contains(now_ms)
        return any(p.contains(now_ms) for p in self.time_intervals)
