"""The ``riffle`` detector on synthetic series of the cases NAB covers.

Each series has 3,000 five-minute points with a daily cycle (NAB's
probation for that length is 450 points, and the detector is told it, as
the harness tells it each file's) and one event at point 2,000: a spike, a
dip, a level shift, a change of the daily phase, more noise, a flat-line or
a burst in a count series; and a series whose routine spikes all go up.
Ten seeds per case; the assertions are the
measured behaviour with a margin, so a change that loses a case fails here
before it reaches NAB. Deterministic and quick (about 240k points).
"""

from __future__ import annotations

import math
import random

import pytest

from riffle.operators.models.anomaly import SeasonalLikelihoodDetector

STEP = 300_000
N, AT, PROBATION = 3000, 2000, 450
SEEDS = range(10)
CASES = (
    "spike",
    "dip",
    "level_shift",
    "phase_change",
    "noise_increase",
    "flatline",
    "count_burst",
    "none",
)


def _series(case: str, seed: int) -> list[float]:
    """``N`` values of ``case``; the event (none for ``"none"``) starts at ``AT``."""
    rng = random.Random(seed)
    values: list[float] = []
    burst = 0.0
    for i in range(N):
        phase = math.pi / 2 if case == "phase_change" and i >= AT else 0.0
        day = math.sin(2 * math.pi * i / 288 + phase)
        noise = rng.gauss(0, 5 if case == "noise_increase" and i >= AT else 2)
        value = 50 + 10 * day + noise
        if case == "spike" and i == AT:
            value += 25
        elif case == "dip" and i == AT:
            value -= 25
        elif case == "level_shift" and i >= AT:
            value += 15
        elif case == "flatline" and AT <= i < AT + 150:
            value = values[AT - 1]
        elif case == "count_burst":
            # Poisson-like counts around 20 a point with small bursts now and
            # then (about one a day), and one of 8 times the rate at AT.
            rate = 20 * (1 + 0.5 * day)
            if rng.random() < 1 / 200:
                burst += rate * rng.uniform(0.5, 2)
            if i == AT:
                burst += 8 * rate
            mean = rate + burst
            burst *= 0.8
            value = float(max(0, round(rng.gauss(mean, math.sqrt(mean)))))
        values.append(value)
    return values


def _run(case: str, seed: int) -> tuple[list[float], list[str]]:
    detector = SeasonalLikelihoodDetector(probation=PROBATION)
    results = [detector.update(i * STEP, v) for i, v in enumerate(_series(case, seed))]
    return [r.score for r in results], [r.label for r in results]


def _flagged_within(labels: list[str], points: int) -> bool:
    return "anomaly" in labels[AT : AT + points]


@pytest.mark.parametrize(
    ("case", "within", "at_least"),
    [
        ("spike", 1, 9),
        ("dip", 1, 9),
        ("level_shift", 2, 9),
        ("phase_change", 7, 9),
        ("noise_increase", 150, 10),
        ("count_burst", 1, 10),
    ],
)
def test_each_event_is_flagged(case: str, within: int, at_least: int) -> None:
    # Measured: the spike, dip, shift and burst at their first point in every
    # seed but seed 1, where a false alarm 100 points before starts the
    # post-alert rest (a fifth of the probation) over the event; the phase
    # change within a point in 8 seeds, 6 in a ninth; more noise (x2.5) only
    # once enough larger errors have been averaged: 1-128 points in, median 15.
    flagged = sum(_flagged_within(_run(case, seed)[1], within) for seed in SEEDS)
    assert flagged >= at_least


def test_a_quiet_series_has_few_false_alarms() -> None:
    # Measured: 1 alert over 10 seeds x 2,550 scored points (2 before a record
    # of the range by less than a band width stopped being a new band).
    alarms = [_run("none", seed)[1][PROBATION:].count("anomaly") for seed in SEEDS]
    assert max(alarms) <= 2
    assert sum(alarms) <= 5


def test_records_of_pure_noise_are_not_new_levels() -> None:
    # White noise (no cycle) keeps setting small records of its range; a
    # value beyond the range seen is a new band only a band width beyond it.
    # Measured: 11 alerts over 10 seeds x 2,550 scored points (0-3 a seed);
    # 30 (1-5 a seed) when every record was a new band.
    alarms = []
    for seed in SEEDS:
        rng = random.Random(seed)
        detector = SeasonalLikelihoodDetector(probation=PROBATION)
        labels = [detector.update(i * STEP, 50 + rng.gauss(0, 10)).label for i in range(N)]
        alarms.append(labels[PROBATION:].count("anomaly"))
    assert max(alarms) <= 4
    assert sum(alarms) <= 18


def test_small_bursts_of_a_count_series_alert_now_and_then() -> None:
    # The bursts of 1.5-3 times the rate (about one a day) before the big one
    # are real, if unlabelled: measured 0-5 alerts per seed in 1,550 points.
    alarms = [_run("count_burst", seed)[1][PROBATION:AT].count("anomaly") for seed in SEEDS]
    assert max(alarms) <= 8
    assert sum(alarms) <= 35


def test_a_flatline_outranks_the_day_before_but_is_often_not_flagged() -> None:
    # A known weakness: a value that stops moving is explained by the level
    # model, so only the novelty of its shape speaks. Measured: above the
    # previous day's highest score in 9 of 10 seeds, labelled in 5 (19-53
    # points late).
    outranks = flagged = 0
    for seed in SEEDS:
        scores, labels = _run("flatline", seed)
        outranks += max(scores[AT : AT + 150]) > max(scores[AT - 288 : AT])
        flagged += _flagged_within(labels, 150)
    assert outranks >= 8
    assert flagged >= 4


def test_the_rest_after_an_alert_is_a_fifth_of_the_probation() -> None:
    detector = SeasonalLikelihoodDetector(probation=PROBATION)
    assert detector.quiet == PROBATION // 5
    scores, labels = _run("spike", 0)
    assert labels[AT] == "anomaly"
    assert scores[AT + 1 : AT + 1 + PROBATION // 5] == [0.0] * (PROBATION // 5)


def _skewed(seed: int, dip: float) -> list[str]:
    """Labels of a series with routine spikes *up* (one in 50 points, 10-30
    deviations high) and, unless ``dip`` is 0, one dip of ``dip`` at ``AT``."""
    rng = random.Random(seed)
    detector = SeasonalLikelihoodDetector(probation=PROBATION)
    labels = []
    for i in range(N):
        value = 10 + rng.gauss(0, 0.5)
        if rng.random() < 1 / 50:
            value += rng.uniform(5, 15)
        if i == AT:
            value -= dip
        labels.append(detector.update(i * STEP, value).label)
    return labels


def test_routine_spikes_up_neither_alert_often_nor_hide_a_dip() -> None:
    # Each side of the prediction has its own distribution of single
    # surprises: the routine spikes up widen only theirs, so a dip stays news
    # and the spikes are measured against each other. Measured: the dip of 12
    # deviations flagged in 9 of 10 seeds (8 with one distribution for both
    # sides); 34 alerts on the routine spikes over 10 x 2,550 points (87).
    assert sum(_skewed(seed, 6.0)[AT] == "anomaly" for seed in SEEDS) >= 8
    alarms = sum(_skewed(seed, 0.0)[PROBATION:].count("anomaly") for seed in SEEDS)
    assert alarms <= 50
