"""The ARTime port (``benchmarks/artime.py``) on hand-computed and small cases.

ARTime was measured as a candidate member of ``riffle`` (issue 17, round
5); these tests pin what those measurements rely on: the Haar DWT has
Wavelets.jl's conventions, the DVFA creates and resonates categories as
ARTimeNAB.jl's does, the causal mode scores nothing in the probation, uses
only the values it was given and clips levels past the probation's range,
the pickle round trip, and (with NAB's look-ahead range) a NAB file's
detections are NAB's published ARTime rows.
"""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest

from benchmarks.artime import DVFA, ARTime, haar_dwt, similarity
from benchmarks.nab import NAB_DIR as NAB
from benchmarks.nab import load_corpus, row_counts

R2 = math.sqrt(2.0)


def test_haar_dwt_is_wavelets_jl_full_orthonormal_transform() -> None:
    # [approximation; details coarse -> fine]; detail = (second - first) / sqrt 2.
    ramp = haar_dwt([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    expected = [18 / R2, 8 / R2, 2.0, 2.0, 1 / R2, 1 / R2, 1 / R2, 1 / R2]
    assert ramp == pytest.approx(expected, abs=1e-12)
    impulse = haar_dwt([1.0, 0, 0, 0, 0, 0, 0, 0])
    half = 1 / (2 * R2)
    assert impulse == pytest.approx([half, -half, -0.5, 0.0, -1 / R2, 0, 0, 0], abs=1e-12)
    # Orthonormal: the energy is kept.
    rng = random.Random(1)
    x = [rng.random() for _ in range(8)]
    assert sum(v * v for v in haar_dwt(x)) == pytest.approx(sum(v * v for v in x))


def test_dvfa_first_sample_makes_the_all_ones_category_then_new_cluster_then_resonance() -> None:
    art = DVFA(4, rho=0.8)
    a = np.array([0.1, 0.9, 0.3, 0.5])
    b = np.array([0.8, 0.2, 0.6, 0.0])
    assert art.train(a) == (False, 0.0, 0.0)  # the all-ones category; a is not learned
    assert art.categories == 1
    # Against all ones: |x ^ 1| / |1| = 1/2 and the energy similarity 1/2: 0.5^3 * 0.5^2.
    new, best, energy = art.train(a)
    assert new is True
    assert best == pytest.approx(0.5**5)
    assert energy == pytest.approx(0.5)
    assert art.categories == 2
    # The same sample again resonates with its own category: activation 1, nothing added.
    new, best, energy = art.train(a)
    assert (new, best, energy) == (False, 1.0, 1.0)
    assert art.categories == 2
    # A different one is a new cluster.
    assert art.train(b)[0] is True
    assert art.categories == 3


def test_dvfa_between_the_vigilances_adds_a_category_but_no_cluster_and_fast_commit() -> None:
    art = DVFA(2, rho=0.0)
    art.rho_lb, art.rho_ub = 0.2, 0.99
    art.train(np.array([0.5, 0.5]))  # all-ones category
    art.train(np.array([0.5, 0.5]))  # against all ones: 0.03125 < rho_lb, a new cluster
    x = np.array([0.55, 0.5])
    new, best, _ = art.train(x)
    assert 0.2 <= best < 0.99
    assert new is False  # between rho_lb and rho_ub: a category of the best one's cluster
    assert art.categories == 3
    # Fast commit: every category at or above rho_ub learns w = x ^ w (complement coded).
    art.rho_ub = 0.5
    before = art.categories
    assert art.train(np.array([0.5, 0.45]))[0] is False
    assert art.categories == before
    w = pickle.loads(pickle.dumps(art))._w
    assert w[1].tolist() == pytest.approx([0.5, 0.45, 0.5, 0.5])
    assert w[2].tolist() == pytest.approx([0.5, 0.45, 0.45, 0.5])


def test_similarity_is_cosine_with_arts_zero_vector_rule() -> None:
    assert similarity(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(1 / R2)
    assert similarity(np.zeros(2), np.array([0.6, 0.8])) == pytest.approx(0.0)


def _wave(n: int) -> list[float]:
    rng = random.Random(5)
    return [10 + 5 * math.sin(i * 2 * math.pi / 48) + rng.gauss(0, 0.3) for i in range(n)]


def test_the_causal_mode_scores_nothing_in_the_probation_and_uses_only_given_values() -> None:
    values = _wave(3000)
    changed = values[:2000] + [v * 3 for v in values[2000:]]
    full = ARTime(probation=450)
    other = ARTime(probation=450)
    a = [full.update(v) for v in values]
    b = [other.update(v) for v in changed]
    assert a[:450] == [0.0] * 450
    assert a[:2000] == b[:2000]  # nothing after a value changes its score
    assert (full.lo, full.hi) == (min(values[:450]), max(values[:450]))


def test_levels_past_the_probations_range_are_clipped_and_a_break_is_scored() -> None:
    values = _wave(2000)
    art = ARTime(probation=450)
    for v in values:
        art.update(v)
    # Far beyond the range: level 80 (no error), and a break of the wave is anomalous.
    scores = [art.update(v) for v in [1e6] * 16 + [-1e6] * 16]
    assert max(scores) > 0.3


def test_a_known_range_equals_the_held_probation_when_the_probation_spans_it() -> None:
    values = _wave(3000)
    values[10], values[20] = 30.0, -10.0  # the file's extremes, inside the probation
    told = ARTime(probation=450, lo=min(values), hi=max(values))
    held = ARTime(probation=450)
    a = [told.update(v) for v in values]
    b = [held.update(v) for v in values]
    assert a[450:] == b[450:]


def test_the_pickle_gives_identical_next_scores() -> None:
    values = _wave(3000)
    art = ARTime(probation=450)
    for v in values[:2000]:
        art.update(v)
    clone = pickle.loads(pickle.dumps(art))
    assert [clone.update(v) for v in values[2000:]] == [art.update(v) for v in values[2000:]]


def test_nyc_taxi_with_the_files_range_has_nabs_published_artime_detections() -> None:
    if not (NAB / "data" / "realKnownCause" / "nyc_taxi.csv").exists():
        pytest.skip(f"NAB subset not at {NAB}")
    corpus = load_corpus(NAB / "data", NAB / "combined_windows.json")
    series = next(s for s in corpus if s.key == "realKnownCause/nyc_taxi.csv")
    art = ARTime(probation=series.probation, lo=min(series.values), hi=max(series.values))
    scores = [art.update(v) for v in series.values]
    # NAB's published ARTime row (standard, threshold 0.317486): tp 7, fp 3, fn 1028.
    assert row_counts(series, scores, 0.317486) == (7, 3, 1028)
    hits = [i for i, s in enumerate(scores) if s >= 0.317486 and i >= series.probation]
    assert sum(any(lo <= i <= hi for lo, hi in series.windows) for i in hits) == 7
