"""The pure half of the Grafana protocol: step choice, payload values, variable queries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from riffle.api.errors import ApiError
from riffle.api.grafana_protocol import LADDER_MS, as_list, pick_step, series_name, variable_query

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def test_the_step_is_the_window_when_every_point_fits() -> None:
    assert pick_step(MIN, 3 * HOUR, 60_000, 550) == MIN
    assert pick_step(10_000, HOUR, 1_000, 1_000) == 10_000


def test_the_step_grows_with_fewer_points_and_a_wider_interval() -> None:
    assert pick_step(MIN, 3 * HOUR, 60_000, 20) == 10 * MIN
    assert pick_step(MIN, 3 * HOUR, HOUR, 1_000) == HOUR
    assert pick_step(MIN, 90 * DAY, None, 100) == DAY  # the widest rung that fits
    assert pick_step(MIN, 400 * DAY, None, 100) == 4 * DAY  # past the ladder: whole days


@given(
    window=st.sampled_from([1_000, 10_000, 60_000, 7_000, 300_000, HOUR]),
    span=st.integers(1_000, 400 * DAY),
    interval=st.none() | st.integers(1, DAY),
    points=st.none() | st.integers(1, 5_000),
)
def test_every_step_is_a_multiple_of_the_window_and_bounds_the_points(
    window: int, span: int, interval: int | None, points: int | None
) -> None:
    step = pick_step(window, span, interval, points)
    assert step % window == 0
    assert span // step <= (points or 1_000)
    if step in LADDER_MS and step != window:
        assert step >= (interval or 0)


def test_payload_values_come_as_lists_commas_or_regex_multi_values() -> None:
    assert as_list(["de", "fr"]) == ["de", "fr"]
    assert as_list("de, fr") == ["de", "fr"]
    assert as_list("(de|fr|a\\.b)") == ["de", "fr", "a.b"]
    assert as_list("$__all") == [] and as_list("") == [] and as_list(None) == []


def test_series_names_read_like_selectors() -> None:
    assert series_name("revenue", {}) == "revenue"
    assert series_name("revenue", {"device": "m", "country": "de"}) == (
        'revenue{country="de",device="m"}'
    )


def test_variable_queries_parse_or_refuse() -> None:
    assert variable_query({"target": "metrics"}) == ("metrics", [])
    assert variable_query("values( revenue , country )") == ("values", ["revenue", "country"])
    assert variable_query({"target": "values", "dimension": "country"}) == ("values", ["country"])
    for bad in ("metrics(x)", "values()", "drop; tables", "dimensions"):
        with pytest.raises(ApiError):
            variable_query(bad)
