"""Local hours and days against a brute-force reference built from zoneinfo alone.

The reference walks minute by minute back from an instant while its local
date (or local hour) stays the same: the first instant of that run is the
bucket start. Instants are drawn around DST changes (23 h and 25 h days) in
zones with whole-hour, half-hour and 45-minute offsets.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from riffle.operators.calendar import Calendar

HOUR, DAY, MINUTE = 3_600_000, 86_400_000, 60_000
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # half-hour DST shift
    "Asia/Kolkata",  # +05:30, no DST
    "Asia/Kathmandu",  # +05:45
    "America/St_Johns",  # -03:30 with DST
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/Santiago",  # DST changes at local midnight
]
# 2026 DST changes: EU 29 Mar / 25 Oct, US 8 Mar / 1 Nov, southern 5 Apr / 4 Oct.
DST_DAYS = [
    datetime(2026, 3, 8, tzinfo=UTC),
    datetime(2026, 3, 29, tzinfo=UTC),
    datetime(2026, 4, 5, tzinfo=UTC),
    datetime(2026, 9, 6, tzinfo=UTC),
    datetime(2026, 10, 4, tzinfo=UTC),
    datetime(2026, 10, 25, tzinfo=UTC),
    datetime(2026, 11, 1, tzinfo=UTC),
]


def _key(zone: ZoneInfo, at_ms: int, step_ms: int) -> tuple[int, ...]:
    local = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(zone)
    if step_ms == DAY:
        return (local.year, local.month, local.day)
    return (local.year, local.month, local.day, local.hour)


def reference_start(zone_name: str, at_ms: int, step_ms: int) -> int:
    """The first minute of the contiguous run of instants sharing ``at_ms``'s local bucket."""
    zone = ZoneInfo(zone_name)
    want = _key(zone, at_ms, step_ms)
    start = at_ms - at_ms % MINUTE
    while _key(zone, start - MINUTE, step_ms) == want:
        start -= MINUTE
    return start


instants = st.tuples(
    st.sampled_from(DST_DAYS), st.integers(-2 * DAY, 2 * DAY), st.sampled_from(ZONES)
).map(lambda t: (int(t[0].timestamp() * 1000) + t[1], t[2]))


@settings(max_examples=300, deadline=None)
@given(instants, st.sampled_from([HOUR, DAY]))
def test_bucket_start_matches_the_brute_force_reference(
    point: tuple[int, str], step_ms: int
) -> None:
    at_ms, zone = point
    calendar = Calendar.of(zone, at_ms - DAY, at_ms + DAY)
    start = calendar.bucket(at_ms, step_ms)
    assert start <= at_ms
    assert start == reference_start(zone, at_ms, step_ms)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(DST_DAYS), st.sampled_from(ZONES))
def test_days_are_23_24_or_25_hours_and_tile_the_range(day: datetime, zone: str) -> None:
    start = int(day.timestamp() * 1000) - 3 * DAY
    end = start + 7 * DAY
    calendar = Calendar.of(zone, start, end)
    bounds = calendar.boundaries(start, end, DAY)
    lengths = {b - a for a, b in itertools.pairwise(bounds)}
    assert lengths <= {23 * HOUR, 23.5 * HOUR, 24 * HOUR, 24.5 * HOUR, 25 * HOUR}
    for at in range(start, end, 17 * MINUTE):  # every instant lies in the bucket it maps to
        bucket = calendar.bucket(at, DAY)
        assert bucket in bounds or bucket < bounds[0]
        later = [b for b in bounds if b > bucket]
        assert bucket <= at < (later[0] if later else end + DAY)


def test_a_european_spring_day_has_23_hours_and_autumn_day_25() -> None:
    start = int(datetime(2026, 3, 28, tzinfo=UTC).timestamp() * 1000)
    calendar = Calendar.of("Europe/Berlin", start, start + 240 * DAY)
    spring = calendar.bucket(start + DAY + 12 * HOUR, DAY)  # 29 March, noon UTC
    assert calendar.boundaries(spring, spring + 1, DAY) == [spring]
    assert calendar.bucket(spring + 23 * HOUR, DAY) == spring + 23 * HOUR
    autumn = calendar.bucket(int(datetime(2026, 10, 25, 12, tzinfo=UTC).timestamp() * 1000), DAY)
    assert calendar.bucket(autumn + 25 * HOUR - 1, DAY) == autumn
    assert calendar.bucket(autumn + 25 * HOUR, DAY) == autumn + 25 * HOUR


@settings(max_examples=100, deadline=None)
@given(st.lists(instants, min_size=1, max_size=30), st.sampled_from([HOUR, DAY]))
def test_the_sql_labels_equal_the_python_buckets(points: list[tuple[int, str]], step: int) -> None:
    """What the warehouse engines compute (``local_sql``) is what the Redis path computes."""
    con = duckdb.connect()
    for at_ms, zone in points:
        calendar = Calendar.of(zone, at_ms - DAY, at_ms + DAY)
        sql = f"SELECT ({calendar.local_sql('?::BIGINT')} // {step}) * {step}"
        (label,) = con.execute(sql, [at_ms] * len(calendar.segments)).fetchone() or (None,)
        assert calendar.start_of(label, step) == calendar.bucket(at_ms, step)
