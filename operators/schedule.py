"""Cron schedules in a tenant's time zone, and the periods a scheduled run covers.

Cron expressions (checked by :mod:`config.schedules`) are evaluated on the wall
clock of an IANA zone by ``cronsim``, the way cronie does it across DST changes:
a job at a fixed local time runs once a day — on the day the clocks go back it
does not run twice, and on the day they go forward a time the clock skips runs
at the first minute after the jump; jobs that repeat within the hour
(``*/30 * * * *``) run in both repeated hours.

Times are epoch milliseconds, as everywhere in Riffle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from cronsim import CronSim

from riffle.config.errors import RiffleError
from riffle.config.schedules import DURATION, check_cron, check_period

COUNT_CAP = 10_000
"""Most missed fire times counted one by one (a count at the cap means "at least")."""

CalendarPeriod = Literal["hour", "day", "week", "month"]
_UNITS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _local(ms: int, zone: str) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=ZoneInfo(zone))


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def next_due(expr: str, zone: str, after_ms: int) -> int:
    """The first fire time strictly after ``after_ms``."""
    return _ms(next(CronSim(check_cron(expr), _local(after_ms, zone))))


def latest_due(expr: str, zone: str, after_ms: int, now_ms: int) -> tuple[int | None, int]:
    """The newest fire time in ``(after_ms, now_ms]`` (None when there is none) and how
    many fire times that span holds (at most :data:`COUNT_CAP`).

    A scheduler that was down across several fire times runs the newest once and
    records the rest as missed.
    """
    expanded = check_cron(expr)
    newest = _ms(next(CronSim(expanded, _local(now_ms + 1, zone), reverse=True)))
    if newest <= after_ms:
        return None, 0
    count = 0
    for moment in CronSim(expanded, _local(after_ms, zone)):
        if _ms(moment) > now_ms or count == COUNT_CAP:
            break
        count += 1
    return newest, count


def _floor(moment: datetime, unit: CalendarPeriod) -> datetime:
    moment = moment.replace(minute=0, second=0, microsecond=0)
    if unit == "hour":
        return moment
    moment = moment.replace(hour=0)
    if unit == "week":
        moment -= timedelta(days=moment.weekday())
    elif unit == "month":
        moment = moment.replace(day=1)
    return moment


def _back(moment: datetime, unit: CalendarPeriod) -> datetime:
    """The start of the calendar unit before the one starting at naive local ``moment``."""
    if unit == "month":
        year, month = (moment.year, moment.month - 1) if moment.month > 1 else (moment.year - 1, 12)
        return moment.replace(year=year, month=month)
    return (
        moment
        - {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}[unit]
    )


def _start(naive: datetime, zone: str) -> int:
    """Local wall-clock ``naive`` as epoch ms (the earlier instant when it is ambiguous; a
    time the clock skipped maps to the instant after the jump)."""
    tz = ZoneInfo(zone)
    moment = naive.replace(tzinfo=tz, fold=0)
    if moment.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:  # skipped
        moment = moment.replace(fold=1)
    return _ms(moment)


def period_before(period: str, due_ms: int, zone: str) -> tuple[int, int]:
    """``[start, end)`` a run due at ``due_ms`` reports on: the last whole calendar
    ``hour``/``day``/``week`` (Monday to Monday)/``month`` of ``zone`` that ended by
    then, or the duration just before ``due_ms``."""
    found = DURATION.match(period)
    if found:
        return due_ms - int(found.group(1)) * _UNITS[found.group(2)], due_ms
    unit: CalendarPeriod = check_period(period)  # type: ignore[assignment]
    end = _floor(_local(due_ms, zone).replace(tzinfo=None), unit)
    begin = _back(end, unit)
    return _start(begin, zone), _start(end, zone)


def previous_span(start_ms: int, end_ms: int, period: str, zone: str) -> tuple[int, int]:
    """The period just before ``[start, end)`` of the same kind (the previous calendar
    month for ``month``, so a March report compares with February)."""
    if DURATION.match(period):
        return 2 * start_ms - end_ms, start_ms
    return period_before(period, start_ms, zone)


def named_period(text: str, period: str, zone: str, now_ms: int) -> tuple[int, int]:
    """``[start, end)`` of a period named on the command line, read in ``zone``:

    * ``last``: what a run due now would cover (:func:`period_before`);
    * ``2026-12-03`` a day, ``2026-W49`` an ISO week, ``2026-11`` a month;
    * ``START/END``: two local dates or date-times (``2026-12-01/2026-12-04T12:00``).

    ``ValueError`` for anything else.
    """
    text = text.strip()
    if text == "last":
        return period_before(period, now_ms, zone)
    try:
        if "/" in text:
            first, _, second = text.partition("/")
            begin, end = datetime.fromisoformat(first), datetime.fromisoformat(second)
        elif re.fullmatch(r"\d{4}-W\d{2}", text):
            begin = datetime.strptime(text + "-1", "%G-W%V-%u")
            end = begin + timedelta(days=7)
        elif re.fullmatch(r"\d{4}-\d{2}", text):
            begin = datetime.strptime(text, "%Y-%m")
            end = begin.replace(year=begin.year + begin.month // 12, month=begin.month % 12 + 1)
        else:
            begin = datetime.strptime(text, "%Y-%m-%d")
            end = begin + timedelta(days=1)
    except ValueError:
        raise ValueError(
            f"a period is last, 2026-12-03, 2026-W49, 2026-11 or START/END (got {text!r})"
        ) from None
    if begin.tzinfo is not None or end.tzinfo is not None:
        raise ValueError("give local times without an offset: they are read in the tenant's zone")
    if end <= begin:
        raise ValueError(f"the period {text!r} ends before it starts")
    return _start(begin, zone), _start(end, zone)


@dataclass(frozen=True)
class Job:
    """One scheduled job: which kind runs it, its name within the kind, the tenant it acts
    for and when it is due (``cron`` on the wall clock of ``zone``); ``max_attempts`` and
    ``backoff_s``, when given, replace the scheduler's retry policy for its runs."""

    kind: str
    name: str
    tenant: str
    cron: str
    zone: str
    max_attempts: int | None = None
    backoff_s: float | None = None

    @property
    def key(self) -> str:
        """``kind:name``, the job's identity in the scheduler's state."""
        return f"{self.kind}:{self.name}"


class JobFailedError(RiffleError):
    """An attempt failed. ``details`` are recorded on the run and handed to the next attempt
    (a report keeps its deliveries there, so a retry re-sends only what failed);
    ``retryable`` false ends the run as failed at once."""

    def __init__(
        self, message: str, details: dict[str, Any] | None = None, *, retryable: bool = True
    ) -> None:
        super().__init__(message)
        self.details = details or {}
        self.retryable = retryable
