"""The query-string parsers are total: any string is a value in range or a ValueError."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from riffle.api.times import (
    MAX_INSTANT_MS,
    MIN_INSTANT_MS,
    TIME_PATTERN,
    format_instant,
    parse_instant,
)
from riffle.config.durations import MAX_DURATION, parse_duration

NOW = 1_714_564_800_000  # 2024-05-01T12:00:00Z


def _instant(text: str) -> int | str:
    """The parsed instant, or the ValueError's message."""
    try:
        return parse_instant(text, NOW)
    except ValueError as exc:
        return str(exc)


@given(st.text())
@example("99999999999999999999")
@example("9999999999999999")
@example("-999999d")
@example("-99999999999999999999d")
@example("-1e400d")
@example("10000-01-01T00:00:00Z")
@example("9999-12-31T23:59:59+00:00")
@example("0001-01-01T00:00:00+01:00")
@example("2024-05-01T12:00:00")
@example("NaN")
@example("١٢٣")
@example("²")
def test_parse_instant_is_total(text: str) -> None:
    found = _instant(text)
    if isinstance(found, str):
        assert found  # a message for the caller
        return
    assert MIN_INSTANT_MS <= found <= MAX_INSTANT_MS
    format_instant(found)  # every accepted instant prints


@given(st.from_regex(TIME_PATTERN, fullmatch=True))
def test_documented_forms_parse_or_say_why(text: str) -> None:
    found = _instant(text)
    if isinstance(found, str):
        assert re.search(r"outside|not a (relative )?time|no UTC offset", found), found
        return
    assert MIN_INSTANT_MS <= found <= MAX_INSTANT_MS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("-15m", NOW - 900_000),
        ("1714564800000", NOW),
        ("2024-05-01T14:00:00+02:00", NOW),
        ("9999-01-01T00:00:00Z", MAX_INSTANT_MS),
        ("0", MIN_INSTANT_MS),
    ],
)
def test_parse_instant_forms(text: str, expected: int) -> None:
    assert parse_instant(text, NOW) == expected


@pytest.mark.parametrize(
    "text",
    ["99999999999999999999", "9999999999999999", "-999999d", "9999-06-01T00:00:00Z"],
)
def test_out_of_range_instants_say_so(text: str) -> None:
    with pytest.raises(ValueError, match="lies outside"):
        parse_instant(text, NOW)


def test_format_instant_refuses_years_past_9999() -> None:
    assert format_instant(MAX_INSTANT_MS) == "9999-01-01T00:00:00Z"
    with pytest.raises(ValueError, match="years 1 to 9999"):
        format_instant(10**20)


@given(st.one_of(st.text(), st.floats(), st.integers(), st.timedeltas()))
@example("9999999999d")
@example("1" * 400 + "d")
@example(float("nan"))
@example(float("inf"))
@example(-1)
@example(timedelta.max)
def test_parse_duration_is_total(value: object) -> None:
    try:
        found: timedelta | str = parse_duration(value)
    except ValueError as exc:
        found = str(exc)
    if isinstance(found, str):
        assert found
        return
    assert timedelta(0) <= found <= MAX_DURATION


def test_epoch_bounds_are_the_documented_dates() -> None:
    assert datetime.fromtimestamp(MAX_INSTANT_MS / 1000, UTC) == datetime(9999, 1, 1, tzinfo=UTC)
    assert MIN_INSTANT_MS == 0
