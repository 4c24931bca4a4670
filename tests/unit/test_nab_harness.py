"""The NAB harness scores as NAB's sweeper does, and its windowed Gaussian is NAB's.

Hand-computed cases on a tiny corpus: the normalisation (null 0, perfect
100), the earliest detection per window with the scaled sigmoid, false
positives before any window (full cost) and after one (scaled), probation,
and the single best threshold. The published NAB table covers exactly the
subset's files, and its normalisation is 0 for the null detector and 100 for
a perfect one.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks.nab import (
    PROFILES,
    PUBLISHED,
    PUBLISHED_DETECTORS,
    Series,
    leave_one_family_out,
    leave_one_family_out_of,
    load_published,
    raw_at,
    raw_by_file,
    row_counts,
    score_profile,
    sigmoid,
    subset_score,
)
from riffle.operators.models.baselines import WindowedGaussianDetector

STANDARD = PROFILES["standard"]


def _series(n: int, windows: list[tuple[int, int]]) -> Series:
    return Series("fam", "f.csv", [""] * n, list(range(n)), [0.0] * n, windows)


def _at(n: int, hits: dict[int, float]) -> list[float]:
    return [hits.get(i, 0.0) for i in range(n)]


def test_sigmoid_is_nabs_scaled_sigmoid() -> None:
    assert sigmoid(0.0) == 0.0
    assert sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)


def test_null_scores_zero_and_a_left_edge_detection_scores_a_hundred() -> None:
    corpus = [_series(1000, [(400, 499)])]
    assert score_profile(corpus, [_at(1000, {})], STANDARD)[0] == pytest.approx(0.0)
    assert score_profile(corpus, [_at(1000, {400: 1.0})], STANDARD)[0] == pytest.approx(100.0)


def test_only_the_earliest_detection_of_a_window_counts_and_later_ones_are_free() -> None:
    corpus = [_series(1000, [(400, 499)])]
    scores = _at(1000, {450: 1.0, 460: 1.0, 499: 1.0})
    weight = sigmoid(-(499 - 450 + 1) / 100) / sigmoid(-1.0)
    raw = weight  # null is -1, perfect +1
    assert score_profile(corpus, [scores], STANDARD)[0] == pytest.approx(100 * (raw + 1) / 2)


def test_false_positives_cost_fully_before_a_window_and_by_distance_after_it() -> None:
    corpus = [_series(1000, [(400, 499)])]
    before = _at(1000, {300: 1.0, 400: 1.0})
    raw = 1.0 - 0.11
    assert score_profile(corpus, [before], STANDARD)[0] == pytest.approx(100 * (raw + 1) / 2)
    after = _at(1000, {400: 1.0, 549: 1.0})
    raw = 1.0 + 0.11 * sigmoid(abs(499 - 549) / 99)
    assert score_profile(corpus, [after], STANDARD)[0] == pytest.approx(100 * (raw + 1) / 2)


def test_probation_rows_are_not_scored_and_one_threshold_is_chosen() -> None:
    # 15 % of 1000 rows: a detection at row 100 is neither a false positive nor a hit.
    corpus = [_series(1000, [(400, 499)]), _series(1000, [(600, 699)])]
    first = _at(1000, {100: 0.9, 400: 0.5})
    second = _at(1000, {600: 0.5, 800: 0.7})
    score, threshold = score_profile(corpus, [first, second], STANDARD)
    # At 0.5 both windows are hit at their left edge; the false positive 101 rows
    # past the second window costs 0.11 * S(101 / 99).
    assert threshold == 0.5
    assert score == pytest.approx(100 * (2 + 0.11 * sigmoid(101 / 99) + 2) / 4)


def test_raw_at_the_best_threshold_is_the_swept_score() -> None:
    corpus = [_series(1000, [(400, 499)]), _series(1000, [(600, 699)])]
    scores = [_at(1000, {300: 0.8, 420: 0.6}), _at(1000, {650: 0.7, 900: 0.4})]
    score, threshold = score_profile(corpus, scores, STANDARD)
    assert 100 * (raw_at(corpus, scores, STANDARD, threshold) + 2) / 4 == pytest.approx(score)
    # Below every score: both windows hit, both false positives paid.
    raw = raw_at(corpus, scores, STANDARD, 0.1)
    hits = sigmoid(-80 / 100) / sigmoid(-1.0) + sigmoid(-50 / 100) / sigmoid(-1.0)
    assert raw == pytest.approx(hits - 0.11 + 0.11 * sigmoid(201 / 99))


def test_leave_one_family_out_scores_each_family_at_the_others_threshold() -> None:
    def series(family: str) -> Series:
        return Series(family, "f.csv", [""] * 1000, list(range(1000)), [0.0] * 1000, [(400, 499)])

    corpus = [series("a"), series("b")]
    # Family a alone would pick 0.9 (its hit), but b's best threshold is 0.5: at
    # 0.5, a's false positive at row 300 fires before its hit.
    scores = [_at(1000, {300: 0.5, 400: 0.9}), _at(1000, {400: 0.5})]
    combined, per_family = leave_one_family_out(corpus, scores, STANDARD)
    assert per_family["a"] == pytest.approx(100 * (1 - 0.11 + 1) / 2)
    assert per_family["b"] == pytest.approx(0.0)  # a's threshold 0.9 misses b's window
    assert combined == pytest.approx(100 * (1 - 0.11 - 1 + 2) / 4)


def test_leave_one_family_out_of_candidates_chooses_them_on_the_other_families() -> None:
    def series(family: str) -> Series:
        return Series(family, "f.csv", [""] * 1000, list(range(1000)), [0.0] * 1000, [(400, 499)])

    corpus = [series("a"), series("b")]
    # ``first`` hits both windows at their left edge. ``second`` fires falsely
    # in a before the window and misses it, and in b hits the window but fires
    # falsely after it: both families prefer ``first``, so each is scored with it.
    first = [_at(1000, {400: 0.9}), _at(1000, {400: 0.9})]
    second = [_at(1000, {300: 0.9}), _at(1000, {400: 0.9, 700: 0.9})]
    combined, per_family, chosen = leave_one_family_out_of(corpus, [second, first], STANDARD)
    assert chosen == {"a": 1, "b": 1}
    assert per_family == {"a": pytest.approx(100.0), "b": pytest.approx(100.0)}
    assert combined == pytest.approx(100.0)
    # With one candidate it is the threshold-only figure.
    single = leave_one_family_out_of(corpus, [second], STANDARD)
    assert single[:2] == leave_one_family_out(corpus, second, STANDARD)
    assert single[2] == {"a": 0, "b": 0}
    with pytest.raises(ValueError, match="no candidate"):
        leave_one_family_out_of(corpus, [], STANDARD)


def test_windowed_gaussian_is_nabs() -> None:
    det = WindowedGaussianDetector()
    assert det.update(0, 5.0).score == 0.0
    # One value seen: deviation 0 counts as 1e-6, the mean itself scores 1 - Q(0) = 0.5.
    assert det.update(1, 5.0).score == 0.5
    assert det.update(2, 6.0).score == 1.0
    values = [5.0, 5.0, 6.0]
    mean = sum(values) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    z = abs(7.0 - mean) / std
    assert det.update(3, 7.0).score == pytest.approx(1 - 0.5 * math.erfc(z / math.sqrt(2)))


SUBSET = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "nab" / "data"
"""The 35-file NAB subset the harness is run on (``/work/shared`` beside the checkout)."""


def test_the_published_table_covers_exactly_the_subset_for_each_detector_and_profile() -> None:
    table = load_published(PUBLISHED)
    assert sorted(table) == sorted(PUBLISHED_DETECTORS)
    files = set(table["ARTime"]["standard"])
    assert len(files) == 35
    for detector, profiles in table.items():
        assert sorted(profiles) == sorted(PROFILES), detector
        for profile, rows in profiles.items():
            assert set(rows) == files, (detector, profile)
            # One corpus-wide threshold per detector and profile, as NAB publishes.
            assert len({r.threshold for r in rows.values()}) == 1, (detector, profile)
    subset = {f"{p.parent.name}/{p.name}" for p in SUBSET.glob("*/*.csv")}
    if not subset:
        pytest.skip(f"NAB subset not at {SUBSET}")
    assert files == subset


def test_subset_normalisation_is_zero_for_null_and_a_hundred_for_perfect() -> None:
    def series(family: str, name: str, windows: list[tuple[int, int]]) -> Series:
        return Series(family, name, [""] * 1000, list(range(1000)), [0.0] * 1000, windows)

    corpus = [
        series("a", "x.csv", [(400, 499)]),
        series("b", "y.csv", [(300, 349), (600, 699)]),
        series("c", "z.csv", []),
    ]
    for weights in PROFILES.values():
        tp_w, fn_w, fp_w = weights
        null = {"a/x.csv": -fn_w, "b/y.csv": -2 * fn_w, "c/z.csv": 0.0}
        perfect = {"a/x.csv": tp_w, "b/y.csv": 2 * tp_w, "c/z.csv": 0.0}
        assert subset_score(corpus, null, weights) == pytest.approx(0.0)
        assert subset_score(corpus, perfect, weights) == pytest.approx(100.0)
        # The same from detector scores: nothing detected, and each window's left edge.
        nothing = [_at(1000, {}) for _ in corpus]
        edges = [_at(1000, {400: 1.0}), _at(1000, {300: 1.0, 600: 1.0}), _at(1000, {})]
        assert subset_score(corpus, raw_by_file(corpus, nothing, weights, 0.5), weights) == 0.0
        assert subset_score(
            corpus, raw_by_file(corpus, edges, weights, 0.5), weights
        ) == pytest.approx(100.0)
        # A false positive in the file without windows costs fp_w over the 3 windows' range.
        fp = [*edges[:2], _at(1000, {500: 1.0})]
        raw = raw_by_file(corpus, fp, weights, 0.5)
        assert subset_score(corpus, raw, weights) == pytest.approx(
            100 * (3 * tp_w - fp_w + 3 * fn_w) / (3 * (tp_w + fn_w))
        )


def test_row_counts_are_nabs_after_probation() -> None:
    series = _series(1000, [(400, 499)])
    scores = _at(1000, {100: 1.0, 300: 1.0, 420: 1.0, 430: 1.0})
    # Row 100 is in probation (150 rows); 300 is outside the window; 98 window rows missed.
    assert row_counts(series, scores, 0.5) == (2, 1, 98)
