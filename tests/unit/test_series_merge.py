"""The pure parts of a series query: hot/cold split and merge, group_by, instants."""

from __future__ import annotations

import pytest

from riffle.api.series import Series, cold_range, combine, group_series, merge_hot_cold
from riffle.api.times import format_instant, parse_instant
from riffle.config.spec import Aggregation
from riffle.operators.records import Dims
from tests.integration.stores_support import BASE_MS, window

MIN = 60_000
DE = (("country", "de"), ("device", "desktop"))
DE_M = (("country", "de"), ("device", "mobile"))
FR_M = (("country", "fr"), ("device", "mobile"))


def starts(series: list[Series]) -> dict[Dims, list[int]]:
    return {dims: [(w.window_start - BASE_MS) // MIN for w in windows] for dims, windows in series}


@pytest.mark.parametrize(
    ("hot_boundary", "first_hot", "expected"),
    [
        (0, 0, None),  # Redis covers the start and it is all within the horizon
        (5, 0, (0, 5)),  # the part older than the horizon
        (0, 3, (0, 3)),  # Redis has nothing at the range start
        (2, 7, (0, 7)),  # both: whichever reaches further
        (0, None, (0, 10)),  # Redis has nothing at all
        (20, 0, (0, 10)),  # the whole range is older than the horizon
        (-5, 0, None),
    ],
)
def test_cold_range(hot_boundary: int, first_hot: int | None, expected: object) -> None:
    assert cold_range(0, 10, hot_boundary, first_hot) == expected


def test_merge_has_no_gaps_or_duplicates_at_the_boundary() -> None:
    cold = [(DE, [window(BASE_MS + i * MIN, DE, values=(1.0,)) for i in range(4)])]
    hot = [
        (DE, [window(BASE_MS + i * MIN, DE, values=(2.0,)) for i in range(3, 6)]),
        (FR_M, [window(BASE_MS + 5 * MIN, FR_M)]),
    ]
    merged = merge_hot_cold(hot, cold)
    assert starts(merged) == {DE: [0, 1, 2, 3, 4, 5], FR_M: [5]}
    assert [w.count for w in merged[0][1]] == [1, 1, 1, 1, 1, 1]
    assert merged[0][1][3] is hot[0][1][0]  # both hold window 3: Redis wins


def test_a_cold_final_beats_only_a_hot_partial() -> None:
    cold_final = window(values=(1.0, 2.0), revision=5)
    hot_partial = window(values=(1.0,), final=False, revision=1)
    assert merge_hot_cold([(DE, [hot_partial])], [(DE, [cold_final])]) == [(DE, [cold_final])]
    hot_final = window(values=(4.0,), revision=1)
    assert merge_hot_cold([(DE, [hot_final])], [(DE, [cold_final])]) == [(DE, [hot_final])]
    assert merge_hot_cold([], []) == []


def test_group_by_avg_is_exact_not_a_mean_of_means() -> None:
    de = window(BASE_MS, DE, values=(10.0, 20.0, 30.0), aggregation="avg", revision=2)
    de_m = window(BASE_MS, DE_M, values=(100.0,), aggregation="avg", final=False, revision=3)
    fr = window(BASE_MS, FR_M, values=(1.0, 2.0), aggregation="avg", revision=4)
    later = window(BASE_MS + MIN, DE_M, values=(5.0,), aggregation="avg")
    series = [(DE, [de]), (DE_M, [de_m, later]), (FR_M, [fr])]

    by_country = group_series(series, ["country"], "avg")
    assert [dims for dims, _ in by_country] == [(("country", "de"),), (("country", "fr"),)]
    merged, alone = by_country[0][1]
    assert merged.value == pytest.approx(160.0 / 4)  # not (20 + 100) / 2
    assert (merged.count, merged.sum, merged.min, merged.max) == (4, 160.0, 10.0, 100.0)
    assert not merged.is_final  # one part is still open
    assert merged.revision == 5
    assert (alone.value, alone.is_final, alone.window_start) == (5.0, True, BASE_MS + MIN)
    assert by_country[1][1] == [combine([fr], (("country", "fr"),), "avg")]

    [(dims, [total, _])] = group_series(series, [], "avg")
    assert dims == ()
    assert total.value == pytest.approx(163.0 / 6)
    assert total.revision == 9


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [("count", 5.0), ("sum", 63.0), ("min", 1.0), ("max", 30.0), ("avg", 63.0 / 5)],
)
def test_combine_every_aggregation(aggregation: Aggregation, expected: float) -> None:
    parts = [
        window(values=(10.0, 20.0, 30.0), aggregation=aggregation),
        window(values=(1.0, 2.0), dims=FR_M, aggregation=aggregation),
    ]
    merged = combine(parts, (), aggregation)
    assert merged.value == pytest.approx(expected)
    assert merged.is_final


def test_combine_empty_windows_keeps_min_max_undefined() -> None:
    empty = window(values=(), aggregation="min")
    merged = combine([empty, empty], (), "min")
    assert (merged.count, merged.min, merged.max, merged.value) == (0, None, None, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", BASE_MS),
        ("-15m", BASE_MS - 15 * MIN),
        ("-1h", BASE_MS - 60 * MIN),
        (str(BASE_MS - 1), BASE_MS - 1),
        ("2023-11-14T22:14:00Z", BASE_MS),
        ("2023-11-14T23:14:00.250+01:00", BASE_MS + 250),
    ],
)
def test_parse_instant(text: str, expected: int) -> None:
    assert parse_instant(text, BASE_MS) == expected


@pytest.mark.parametrize("text", ["yesterday", "-15", "2023-11-14T22:14:00", "-1y", ""])
def test_parse_instant_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_instant(text, BASE_MS)


def test_format_instant() -> None:
    assert format_instant(BASE_MS) == "2023-11-14T22:14:00Z"
    assert format_instant(BASE_MS + 7) == "2023-11-14T22:14:00.007Z"
