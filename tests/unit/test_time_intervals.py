"""Time intervals as Alertmanager's: ``times``, ``weekdays``, ``days_of_month``, ``months``,
``years`` and ``location``, checked against a brute-force reference (sets of the local
minutes, days, months and years an interval covers, in zoneinfo's local time) at random
instants and around DST changes; the spec errors, with file and line; and a mute by day of
month through the dispatcher."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from riffle.config.errors import SpecError
from riffle.config.notifications import NotificationsSpec
from riffle.config.spec import parse_spec
from riffle.config.time_intervals import TimeInterval
from riffle.operators.notify.dispatcher import Dispatcher
from tests.unit.test_notify import BASE_SPEC, _t

DAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
MONTH_NAMES = [
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
]
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "America/Santiago",  # southern hemisphere, DST changes at local midnight
    "Asia/Kathmandu",  # +05:45, no DST
]
FIRST = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
LAST = int(datetime(2029, 12, 31, tzinfo=UTC).timestamp())


@cache
def _transitions(zone: str) -> tuple[int, ...]:
    """Unix seconds of the zone's offset changes in 2024..2029 (to the hour, found by
    scanning hour by hour)."""
    tz = ZoneInfo(zone)
    out: list[int] = []
    previous = datetime.fromtimestamp(FIRST, tz).utcoffset()
    for ts in range(FIRST, LAST, 3600):
        offset = datetime.fromtimestamp(ts, tz).utcoffset()
        if offset != previous:
            out.append(ts)
        previous = offset
    return tuple(out)


def _reference(interval: dict[str, Any], ts: int) -> bool:
    """Brute force: expand each field to the set of local values it covers."""
    local = datetime.fromtimestamp(ts, UTC).astimezone(ZoneInfo(interval.get("location", "UTC")))
    checks: list[bool] = []
    if "times" in interval:
        minutes: set[int] = set()
        for r in interval["times"]:
            begin, end = (int(t[:2]) * 60 + int(t[3:]) for t in (r["start_time"], r["end_time"]))
            minutes |= set(range(begin, end))
        checks.append(local.hour * 60 + local.minute in minutes)
    if "weekdays" in interval:
        days: set[str] = set()
        for item in interval["weekdays"]:
            first, _, last = item.partition(":")
            days |= set(DAYS[DAYS.index(first) : DAYS.index(last or first) + 1])
        checks.append(local.strftime("%A").lower() in days)
    if "days_of_month" in interval:
        following = date(local.year + local.month // 12, local.month % 12 + 1, 1)
        length = (following - date(local.year, local.month, 1)).days
        covered: set[int] = set()
        for item in interval["days_of_month"]:
            first, _, last = str(item).partition(":")
            a, b = (int(x) if int(x) > 0 else length + int(x) + 1 for x in (first, last or first))
            covered |= set(range(a, b + 1)) & set(range(1, length + 1))
        checks.append(local.day in covered)
    if "months" in interval:
        months: set[int] = set()
        for item in interval["months"]:
            ends = [
                MONTH_NAMES.index(x) + 1 if x in MONTH_NAMES else int(x)
                for x in str(item).split(":")
            ]
            months |= set(range(ends[0], ends[-1] + 1))
        checks.append(local.month in months)
    if "years" in interval:
        years: set[int] = set()
        for item in interval["years"]:
            ends = [int(x) for x in str(item).split(":")]
            years |= set(range(ends[0], ends[-1] + 1))
        checks.append(local.year in years)
    return all(checks)


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@st.composite
def _time_range(draw: st.DrawFn) -> dict[str, str]:
    start = draw(st.integers(0, 1439))
    end = draw(st.integers(start + 1, 1440))
    return {"start_time": _hhmm(start), "end_time": _hhmm(end)}


@st.composite
def _ordered(draw: st.DrawFn, low: int, high: int) -> tuple[int, int]:
    a = draw(st.integers(low, high))
    return a, draw(st.integers(a, high))


def _valid_day_of_month(pair: tuple[int, int]) -> bool:
    """Alertmanager's acceptance rule for a day-of-month range."""
    a, b = pair
    return not (a < 0 < b) and (28 + a if a < 0 else a) <= (28 + b if b < 0 else b)


_DAY = st.integers(-31, 31).filter(lambda d: d != 0)
_WEEKDAY = _ordered(0, 6).map(
    lambda p: DAYS[p[0]] if p[0] == p[1] else f"{DAYS[p[0]]}:{DAYS[p[1]]}"
)
_DAY_OF_MONTH = (
    st.tuples(_DAY, _DAY)
    .filter(_valid_day_of_month)
    .map(lambda p: p[0] if p[0] == p[1] else f"{p[0]}:{p[1]}")
)
_MONTH = (
    _ordered(1, 12)
    .flatmap(lambda p: st.tuples(st.just(p), st.sampled_from([str(p[0]), MONTH_NAMES[p[0] - 1]])))
    .map(lambda x: x[1] if x[0][0] == x[0][1] else f"{x[1]}:{MONTH_NAMES[x[0][1] - 1]}")
)
_YEAR = _ordered(2024, 2029).map(lambda p: p[0] if p[0] == p[1] else f"{p[0]}:{p[1]}")


@st.composite
def _interval(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fields = {
        "times": _time_range(),
        "weekdays": _WEEKDAY,
        "days_of_month": _DAY_OF_MONTH,
        "months": _MONTH,
        "years": _YEAR,
    }
    for name, entries in fields.items():
        if draw(st.booleans()):
            out[name] = draw(st.lists(entries, min_size=1, max_size=3))
    if draw(st.booleans()):
        out["location"] = draw(st.sampled_from(ZONES))
    return out


@st.composite
def _instant(draw: st.DrawFn, zone: str) -> int:
    """Unix seconds: anywhere in 2024..2029, or within three hours of a DST change."""
    changes = _transitions(zone)
    if changes and draw(st.booleans()):
        return draw(st.sampled_from(changes)) + draw(st.integers(-3 * 3600, 3 * 3600))
    return draw(st.integers(FIRST, LAST))


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_an_interval_contains_exactly_what_the_brute_force_reference_covers(
    data: st.DataObject,
) -> None:
    interval = data.draw(_interval())
    ts = data.draw(_instant(interval.get("location", "UTC")))
    spec = TimeInterval.model_validate({"name": "x", **interval})
    assert spec.contains(ts * 1000 + data.draw(st.integers(0, 999))) == _reference(interval, ts)


@settings(max_examples=150, deadline=None)
@given(st.lists(_interval(), max_size=3), st.data())
def test_a_named_interval_with_a_list_contains_what_any_of_its_periods_does(
    periods: list[dict[str, Any]], data: st.DataObject
) -> None:
    ts = data.draw(_instant(data.draw(st.sampled_from(ZONES))))
    named = TimeInterval.model_validate({"name": "x", "time_intervals": periods})
    assert named.contains(ts * 1000) == any(_reference(p, ts) for p in periods)


def _berlin(*args: int) -> int:
    """Unix ms of a Berlin wall-clock time (the earlier one of a repeated hour)."""
    return int(datetime(*args, tzinfo=ZoneInfo("Europe/Berlin")).timestamp() * 1000)


def test_dst_changes_in_the_location_are_honoured() -> None:
    night = TimeInterval.model_validate(
        {
            "name": "n",
            "location": "Europe/Berlin",
            "times": [{"start_time": "02:00", "end_time": "03:00"}],
        }
    )
    spring = int(datetime(2026, 3, 29, tzinfo=UTC).timestamp() * 1000)
    # 2026-03-29: 02:00-03:00 does not exist in Berlin, so no minute of that day is in it.
    assert not any(night.contains(spring + m * 60_000) for m in range(24 * 60))
    autumn = _berlin(2026, 10, 25, 2, 30)  # 00:30Z, CEST; the hour repeats at 01:30Z, CET
    assert night.contains(autumn) and night.contains(autumn + 3_600_000)
    assert not night.contains(autumn + 2 * 3_600_000)


def test_negative_days_count_from_the_end_of_each_month() -> None:
    last_two = TimeInterval.model_validate({"name": "e", "days_of_month": ["-2:-1"]})
    assert last_two.contains(_utc(2028, 2, 28)) and last_two.contains(_utc(2028, 2, 29))
    assert not last_two.contains(_utc(2028, 2, 27))
    assert last_two.contains(_utc(2026, 4, 29)) and not last_two.contains(_utc(2026, 5, 29))
    day31 = TimeInterval.model_validate({"name": "d", "days_of_month": [31]})
    assert not any(day31.contains(_utc(2026, 4, d)) for d in range(1, 31))
    rest = TimeInterval.model_validate({"name": "r", "days_of_month": ["15:-1"]})
    assert rest.contains(_utc(2026, 2, 28)) and not rest.contains(_utc(2026, 2, 14))


def _utc(*args: int) -> int:
    return int(datetime(*args, 12, tzinfo=UTC).timestamp() * 1000)


def test_months_years_and_weekdays_by_name_number_and_range() -> None:
    q1 = TimeInterval.model_validate(
        {"name": "q", "months": ["January:march", "12"], "years": ["2026:2027"]}
    )
    assert q1.contains(_utc(2026, 3, 31)) and q1.contains(_utc(2027, 12, 1))
    assert not q1.contains(_utc(2026, 4, 1)) and not q1.contains(_utc(2028, 1, 5))
    week = TimeInterval.model_validate({"name": "w", "weekdays": ["Monday:friday"]})
    monday = _utc(2026, 1, 5)
    assert [week.contains(monday + d * 86_400_000) for d in range(7)] == [True] * 5 + [False] * 2


def test_empty_field_lists_never_match_and_an_empty_interval_always_does() -> None:
    assert TimeInterval.model_validate({"name": "a"}).contains(0)
    assert not TimeInterval.model_validate({"name": "n", "weekdays": []}).contains(0)
    assert not TimeInterval.model_validate({"name": "l", "time_intervals": []}).contains(0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("weekdays", ["saturday:sunday"], "runs from Sunday towards Saturday"),
        ("weekdays", ["mon"], "'mon' is not a weekday"),
        ("weekdays", ["1"], "is not a weekday"),
        ("weekdays", ["monday:tuesday:friday"], "a range is first:last"),
        ("days_of_month", [0], "0 is not a valid day of the month"),
        ("days_of_month", ["-32:-1"], "-32 is not a valid day"),
        ("days_of_month", [65], "quote ranges"),
        ("days_of_month", ["-3:5"], "end day must be negative"),
        ("days_of_month", ["10:5"], "end day 5 is always before start day 10"),
        ("days_of_month", ["28:-3"], "end day -3 is always before start day 28"),
        ("months", ["march:january"], "end month january is before start month march"),
        ("months", ["13"], "13 is not a month"),
        ("months", ["jan"], "'jan' is not a valid month"),
        ("years", ["2027:2026"], "end year 2026 is before start year 2027"),
        ("years", ["twenty"], "not a valid year"),
        ("times", [{"start_time": "22:00", "end_time": "06:00"}], "crosses midnight"),
        ("times", [{"start_time": "10:00", "end_time": "10:00"}], "empty or crosses"),
        ("times", [{"start_time": "9:00", "end_time": "10:00"}], "not a quoted time"),
        ("times", [{"start_time": 1320, "end_time": "24:00"}], "unquoted 22:00"),
        ("times", [{"start_time": "24:00", "end_time": "24:00"}], "empty or crosses"),
        ("times", [{"start_time": "10:00"}], "Field required"),
        ("location", "Mars/Olympus", "not an IANA time zone"),
    ],
)
def test_what_alertmanager_refuses_is_refused(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TimeInterval.model_validate({"name": "x", field: value})


def test_errors_name_file_and_line_and_both_forms_do_not_mix() -> None:
    text = (
        BASE_SPEC
        + """
notifications:
  receivers: [{name: ops}]
  route: {receiver: ops, mute_time_intervals: [month_end]}
  time_intervals:
    - name: month_end
      days_of_month: ['1:5', '-3:2']
      times: [{start_time: '22:00', end_time: '06:00'}]
    - name: both
      weekdays: [monday]
      time_intervals: [{months: [may]}]
"""
    )
    with pytest.raises(SpecError) as err:
        parse_spec(text, source="s.yaml")
    message = str(err.value)
    assert "s.yaml:13: notifications.time_intervals[0].days_of_month[1]: " in message
    assert "s.yaml:14: notifications.time_intervals[0].times[0]: " in message
    assert "crosses midnight (write 22:00-24:00 and 00:00-06:00)" in message
    assert "s.yaml:15: notifications.time_intervals[1]: " in message
    assert "give either time_intervals or weekdays directly" in message


def test_a_route_is_muted_on_the_last_day_of_each_month() -> None:
    spec = NotificationsSpec.model_validate(
        {
            "receivers": [{"name": "default"}],
            "route": {
                "receiver": "default",
                "group_wait": "10s",
                "mute_time_intervals": ["month_end"],
            },
            "time_intervals": [
                {
                    "name": "month_end",
                    "time_intervals": [{"days_of_month": [-1], "location": "America/New_York"}],
                }
            ],
        }
    )
    d = Dispatcher(spec)
    # 2026-02-28T12:00 in New York: the month's last day there.
    last_day = int(datetime(2026, 2, 28, 12, tzinfo=ZoneInfo("America/New_York")).timestamp())
    d.ingest(_t("a"), last_day * 1000)
    assert d.due((last_day + 60) * 1000) == []
    next_day = datetime(2026, 3, 1, tzinfo=ZoneInfo("America/New_York")) + timedelta(minutes=1)
    [note] = d.due(int(next_day.timestamp() * 1000))
    assert [a.instance for a in note.alerts] == ["a"]
