"""Insights against hand-computed cases: Mann-Kendall, Theil-Sen, ADWIN change points, movers."""

from __future__ import annotations

import itertools
import statistics

from hypothesis import given, settings
from hypothesis import strategies as st

from riffle.operators.models import insights

BASE = 1_700_000_000_000
MIN = 60_000


def _points(values: list[float]) -> list[tuple[int, float]]:
    return [(BASE + i * MIN, v) for i, v in enumerate(values)]


def test_trend_matches_hand_computed_kendall_tau_and_theil_sen_slope() -> None:
    values = [1.0, 3.0, 2.0, 4.0, 5.0, 7.0, 6.0, 8.0, 9.0, 11.0, 10.0, 12.0]
    found = insights.trend("views", _points(values), MIN)
    assert found is not None and found.kind == "trend"
    pairs = list(itertools.combinations(range(len(values)), 2))
    # By hand: the only discordant pairs are the three swaps (3,2), (7,6), (11,10).
    concordant = sum(values[j] > values[i] for i, j in pairs)
    discordant = sum(values[j] < values[i] for i, j in pairs)
    assert (concordant, discordant) == (63, 3)
    assert abs(found.numbers["tau"] - (63 - 3) / 66) < 1e-12
    slope = statistics.median((values[j] - values[i]) / (j - i) for i, j in pairs)
    assert abs(found.numbers["slope_per_window"] - slope) < 1e-12
    assert found.numbers["p_value"] < 0.001
    assert found.statement.startswith("views is rising: +1 per 1m (Theil-Sen)")


def test_falling_trend_and_no_trend() -> None:
    falling = insights.trend("q", _points([20.0 - i for i in range(10)]), MIN, dims={"a": "b"})
    assert falling is not None and abs(falling.numbers["tau"] + 1.0) < 1e-12
    assert falling.statement.startswith("q{a=b} is falling: -1 per 1m")
    assert falling.numbers["relative_change"] == -9 / 20
    assert insights.trend("q", _points([5.0] * 20), MIN) is None
    assert insights.trend("q", _points([1.0, 2.0] * 10), MIN) is None
    assert insights.trend("q", _points([1.0, 2.0, 3.0]), MIN) is None  # too short


def test_a_level_shift_is_one_change_point_with_the_means_around_it() -> None:
    values = [10.0 + (i % 3) * 0.1 for i in range(60)] + [50.0 + (i % 3) * 0.1 for i in range(60)]
    [found] = insights.change_points("views", _points(values))
    n = found.numbers
    assert (n["changed_at"] - BASE) // MIN == 60
    assert n["detected_at"] >= n["changed_at"]
    assert abs(n["mean_before"] - 10.1) < 0.01 and abs(n["mean_after"] - 50.1) < 0.01
    assert "changed level around 2023-11-14 23:13 UTC: mean 10.1 before, 50.1 after" in (
        found.statement
    )
    assert (
        insights.change_points("views", _points([10.0 + (i % 3) * 0.1 for i in range(120)])) == []
    )


def test_top_movers_compare_totals_with_the_previous_period() -> None:
    de, fr, it, es = ((("c", x),) for x in ("de", "fr", "it", "es"))
    current = {de: [10.0, 10.0], fr: [5.0, 5.0], it: [1.0, 1.0], es: [3.0]}
    previous = {de: [5.0, 5.0], fr: [5.0, 6.0], it: [1.0, 1.0]}
    [mover] = insights.top_movers("views", "count", current, previous, period="1h")
    # de: 10 -> 20 (+100 %); fr: 11 -> 10 (-9 %, under 10 %); it: unchanged; es: no past.
    assert mover.dims == {"c": "de"} and mover.numbers["relative_change"] == 1.0
    assert mover.statement == "views{c=de} rose 100% versus the previous 1h (total 10 → 20)"
    means = insights.top_movers("lat", "avg", {de: [4.0, 2.0]}, {de: [1.0, 1.0]}, period="1h")
    assert means[0].statement == "lat{c=de} rose 200% versus the previous 1h (mean 1 → 3)"


def test_unusual_values_come_from_anomaly_rows_strongest_first() -> None:
    rows = [
        {"metric": "m", "dims": {}, "window_start": BASE, "detector": "riffle", "value": 420.0,
         "score": 0.93, "label": "anomaly", "expected": 210.0, "expected_low": 180.0,
         "expected_high": 240.0, "deviation": 6.0},
        {"metric": "m", "dims": {"c": "de"}, "window_start": BASE + MIN, "detector": "riffle",
         "value": 5.0, "score": 0.5, "label": "anomaly", "expected": None, "expected_low": None,
         "expected_high": None, "deviation": 0.0},
        {"metric": "m", "dims": {}, "window_start": BASE, "detector": "riffle", "value": 1.0,
         "score": 0.2, "label": "normal", "expected": 1.0, "expected_low": 0.0,
         "expected_high": 2.0, "deviation": 0.0},
    ]  # fmt: skip
    found = insights.unusual(rows)
    assert [f.numbers["score"] for f in found] == [0.93, 0.5]
    assert found[0].statement == (
        "m was 420 at 2023-11-14 22:13 UTC, expected 180–240 (anomaly score 0.93, riffle)"
    )
    assert found[1].statement.startswith("m{c=de} was 5 at")


def test_the_feed_is_ordered_by_kind_then_strength() -> None:
    a = insights.Insight("trend", "m", "t", 0.5)
    b = insights.Insight("trend", "m", "t2", 0.9)
    c = insights.Insight("unusual", "z", "u", 0.1)
    assert insights.ranked([a, b, c], 10) == [c, b, a]
    assert insights.ranked([a, b, c], 1) == [c]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-1000, 1000), min_size=8, max_size=60),
    st.integers(1, 100),
    st.integers(-1000, 1000),
)
def test_trend_is_invariant_to_scale_and_offset_and_flips_when_reversed(
    values: list[int], scale: int, offset: int
) -> None:
    base = insights.trend("m", _points([float(v) for v in values]), MIN)
    moved = insights.trend("m", _points([float(v * scale + offset) for v in values]), MIN)
    back = insights.trend("m", _points([float(v) for v in values[::-1]]), MIN)
    assert (base is None) == (moved is None) == (back is None)
    if base is not None and moved is not None and back is not None:
        assert abs(base.numbers["tau"] - moved.numbers["tau"]) < 1e-9
        assert abs(base.numbers["tau"] + back.numbers["tau"]) < 1e-9
        assert (
            abs(moved.numbers["slope_per_window"] - scale * base.numbers["slope_per_window"]) < 1e-6
        )
