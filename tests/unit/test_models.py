"""Conformance and behaviour of every online model in ``operators.models``.

Every model class must survive a pickle round trip (as Bytewax recovery
does) with identical subsequent outputs, be deterministic for a seed, and
leave its inputs alone.
"""

from __future__ import annotations

import copy
import math
import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riffle.config.models import DETECTOR_NAMES
from riffle.operators.models.base import UnknownModelError
from riffle.operators.models.forecast import HoltWintersForecaster
from riffle.operators.models.registry import DETECTORS, make_detector

STEP = 300_000


def _series(seed: int, n: int = 600) -> list[tuple[int, float]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        value = 50 + 20 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 2)
        if i in (400, 401):
            value += 60
        out.append((i * STEP, value))
    return out


def _points(name: str, seed: int) -> list[tuple[int, float]]:
    # River's forest is slow in pure Python: a shorter series keeps the suite quick.
    return _series(seed, 160 if name == "halfspacetrees" else 600)


def _outputs(model: Any, points: list[tuple[int, float]]) -> list[Any]:
    if isinstance(model, HoltWintersForecaster):
        out = []
        for ts, value in points:
            model.learn_one(ts, value)
            out.append(model.forecast(3))
        return out
    return [model.update(ts, value) for ts, value in points]


MODELS: dict[str, Callable[[], Any]] = {n: lambda n=n: make_detector(n) for n in DETECTORS}
MODELS["holt_winters"] = lambda: HoltWintersForecaster(step_ms=STEP, season=288)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_pickle_round_trip_gives_identical_next_outputs(name: str) -> None:
    points = _points(name, 1)
    half = len(points) // 2
    model = MODELS[name]()
    _outputs(model, points[:half])
    restored = pickle.loads(pickle.dumps(model))
    assert _outputs(restored, points[half:]) == _outputs(model, points[half:])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_runs_are_deterministic(name: str) -> None:
    points = _points(name, 2)
    assert _outputs(MODELS[name](), points) == _outputs(MODELS[name](), points)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_inputs_are_not_mutated(name: str) -> None:
    points = _points(name, 3)[:150]
    before = copy.deepcopy(points)
    _outputs(MODELS[name](), points)
    assert points == before


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_scores_lie_in_unit_interval(name: str) -> None:
    for result in _outputs(make_detector(name), _points(name, 4)):
        assert 0.0 <= result.score <= 1.0


def test_the_registry_holds_every_detector_a_spec_may_name() -> None:
    assert sorted(DETECTORS) == sorted(DETECTOR_NAMES)
    for name in DETECTOR_NAMES:
        assert make_detector(name).name == name


def test_unknown_detector_is_named() -> None:
    with pytest.raises(UnknownModelError, match="nope"):
        make_detector("nope")


def test_riffle_flags_the_spike_and_explains_it() -> None:
    results = _outputs(make_detector("riffle"), _series(5))
    spike = results[400]
    quiet = [r.score for r in results[320:399]]
    assert spike.score > max(quiet)
    assert spike.label == "anomaly"
    assert spike.expected_low is not None and spike.expected_high is not None
    assert not spike.expected_low <= spike.value <= spike.expected_high
    assert spike.deviation > 0
    assert "expected" in spike.explanation
    assert sum(r.label == "anomaly" for r in results[320:399]) == 0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(-1e9, 1e9), st.sampled_from([math.nan, math.inf, -math.inf])),
        max_size=120,
    )
)
def test_riffle_takes_any_floats(values: list[float]) -> None:
    detector = make_detector("riffle")
    for i, value in enumerate(values):
        result = detector.update(i * STEP, value)
        assert 0.0 <= result.score <= 1.0
        assert result.label in ("normal", "warning", "anomaly", "learning")


def test_riffle_state_is_compact() -> None:
    detector = make_detector("riffle")
    _outputs(detector, _series(6, 2000))
    assert len(pickle.dumps(detector)) < 4096


def test_forecast_intervals_cover_near_nominal_on_a_seasonal_series() -> None:
    rng = random.Random(7)
    model = HoltWintersForecaster(step_ms=60_000, season=48, level=0.9)
    hits = total = 0
    for i in range(48 * 40):
        value = 100 + 30 * math.sin(2 * math.pi * i / 48) + rng.gauss(0, 5)
        if i > 48 * 10:
            _, _, low, high = model.forecast(1).points[0]
            total += 1
            hits += low <= value <= high
        model.learn_one(i * 60_000, value)
    assert 0.85 <= hits / total <= 0.95
    assert model.skill.smape < model.skill.naive_smape


def test_forecast_points_follow_the_last_window() -> None:
    model = HoltWintersForecaster(step_ms=60_000)
    for i in range(50):
        model.learn_one(i * 60_000, 10.0)
    forecast = model.forecast(3)
    assert [p[0] for p in forecast.points] == [50 * 60_000, 51 * 60_000, 52 * 60_000]
    for _, mean, low, high in forecast.points:
        assert low <= mean <= high
        assert mean == pytest.approx(10.0)


def test_riffle_novelty_flags_a_never_seen_level_once_then_stays_quiet() -> None:
    # A noisy but stable series whose level jumps to a band never seen: the
    # first new value alerts, the quiet period and learned facts keep the
    # rest of the new regime from raising a stream of alerts.
    rng = random.Random(5)
    det = make_detector("riffle")
    labels = []
    for i in range(1500):
        value = (10.0 if i < 1200 else 40.0) + rng.gauss(0, 1)
        labels.append(det.update(i * STEP, value).label)
    assert labels[1200] == "anomaly"
    assert sum(label == "anomaly" for label in labels[1201:]) <= 3
    # New extremes of the noise itself are new bands now and then: under 1 %.
    assert sum(label == "anomaly" for label in labels[200:1200]) <= 10


def test_error_drift_sees_a_change_of_error_level_and_pickles() -> None:
    from riffle.operators.models.drift import ErrorDrift

    rng = random.Random(2)
    watch = ErrorDrift()
    found = [watch.update(min(1.0, abs(rng.gauss(0.05, 0.02)))) for _ in range(1000)]
    assert not any(found[:1000])
    clone = pickle.loads(pickle.dumps(watch))
    later = [min(1.0, abs(rng.gauss(0.5, 0.05))) for _ in range(300)]
    first = [watch.update(e) for e in later]
    assert any(first)
    # A restored snapshot detects exactly as the original would have.
    assert [clone.update(e) for e in later] == first
    assert clone.detections == watch.detections
    assert 0.3 < watch.level <= 0.6


def test_demo_spec_models_page_views_and_api_errors() -> None:
    from riffle.config.spec import load_spec
    from riffle.dataflows.models import modelled_metrics

    modelled = modelled_metrics(load_spec("config/demo.yaml"))
    assert modelled["page_views_10s"][1] is not None and modelled["page_views_10s"][2] is not None
    assert modelled["api_errors"][1] is not None


def test_riffle_restores_a_snapshot_of_an_older_version() -> None:
    det = make_detector("riffle")
    for t, v in _series(1)[:300]:
        det.update(t, v)
    state = det.__getstate__()  # type: ignore[attr-defined]
    old_keys = ("_ctx_seen", "_ctx_hist", "_ctx_lo", "_ctx_hi", "_quiet_left", "quiet")
    for key in (*old_keys, "shape", "_shape_seen"):
        del state[key]
    old = type(det).__new__(type(det))
    old.__setstate__(state)
    assert 0.0 <= old.update(300 * STEP, 50.0).score <= 1.0
    # A snapshot from before the shape fact keeps scoring without it.
    assert old.shape == 0  # type: ignore[attr-defined]


def test_riffle_snapshot_from_before_signed_surprises_keeps_one_distribution() -> None:
    from riffle.operators.models.anomaly import SeasonalLikelihoodDetector

    det = SeasonalLikelihoodDetector(point=0.3)
    for t, v in _series(1)[:300]:
        det.update(t, v)
    state = det.__getstate__()
    for key in ("_signed", "_n1_above", "_n1_below", "_mu1_below", "_var1_below"):
        del state[key]
    old = SeasonalLikelihoodDetector.__new__(SeasonalLikelihoodDetector)
    old.__setstate__(state)
    before = old._mu1
    old.update(300 * STEP, -1e6)  # far below any prediction
    # Its values below the prediction still join the one distribution it had.
    assert old._var1_below == 0.0 and old._mu1 != before
    assert old.point == 0.3
    # A current snapshot keeps the sides apart.
    det.update(300 * STEP, -1e6)
    assert det._var1_below > 0.0 or det._n1_below > 0


def test_riffle_restores_a_snapshot_with_fields_it_dropped() -> None:
    from riffle.operators.models.anomaly import SeasonalLikelihoodDetector

    det = SeasonalLikelihoodDetector()
    for t, v in _series(1)[:300]:
        det.update(t, v)
    state: dict[str, object] = pickle.loads(pickle.dumps(det.__getstate__()))
    # As pickled before the Huber clip, the previous-value prediction and the
    # rest's factor were dropped: those fields are ignored on restore.
    state |= {"huber": 5.0, "use_diff": True, "_diff": 1.0, "_last": 50.0, "quiet_factor": 0.25}
    old = SeasonalLikelihoodDetector.__new__(SeasonalLikelihoodDetector)
    old.__setstate__(state)
    assert [old.update(t, v) for t, v in _series(1)[300:]] == [
        det.update(t, v) for t, v in _series(1)[300:]
    ]


def test_riffle_needs_a_probation_of_at_least_one_point() -> None:
    from riffle.operators.models.base import ModelError

    with pytest.raises(ModelError, match="probation"):
        make_detector("riffle", probation=0)


def test_riffle_shape_fact_spans_at_most_the_kept_bands() -> None:
    from riffle.operators.models.base import ModelError

    with pytest.raises(ModelError, match="shape"):
        make_detector("riffle", shape=4)
    with pytest.raises(ModelError, match="shape"):
        make_detector("riffle", shape=2, context=1)


def test_input_drift_sees_a_level_shift_in_raw_values_and_pickles() -> None:
    from riffle.operators.models.drift import InputDrift

    rng = random.Random(4)
    watch = InputDrift()
    # Raw values, any scale: ADWIN's bound is variance-aware.
    assert not any(watch.update(5000 + rng.gauss(0, 50)) for _ in range(800))
    clone = pickle.loads(pickle.dumps(watch))
    later = [6000 + rng.gauss(0, 50) for _ in range(200)]
    first = [watch.update(v) for v in later]
    assert any(first) and first.index(True) < 50
    assert [clone.update(v) for v in later] == first
    assert watch.update(math.nan) is False and watch.update(math.inf) is False
    assert 5900 < watch.level < 6100


def test_series_models_of_a_snapshot_without_input_drift_still_apply() -> None:
    from riffle.config.models import AnomalySpec
    from riffle.operators.models.series import SeriesModels, ShardModels
    from riffle.operators.records import WindowResult

    old = SeriesModels(STEP, AnomalySpec(), None)
    del old.input_drift  # as pickled before the slot existed
    shard = ShardModels({"m": (STEP, AnomalySpec(), None)})
    shard.series[("t", "m", ())] = pickle.loads(pickle.dumps(old))
    window = WindowResult("t", "m", (), 0, STEP, 1, 5.0, None, None, 5.0, True, 1)
    [record] = shard.apply(window, {})
    assert record.input_drifts == 0 and record.input_level == 0.0


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 5), st.integers(1, 120), st.sampled_from([0, 7, 48]))
def test_forecast_steps_equal_the_per_step_prediction(seed: int, horizon: int, season: int) -> None:
    rng = random.Random(seed)
    model = HoltWintersForecaster(step_ms=60_000, season=season)
    for i in range(300):
        model.learn_one(i * 60_000, 100 + 30 * math.sin(i / 7.6) + rng.gauss(0, 5))
    for h, (ts, mean, low, high) in enumerate(model.forecast(horizon).points, 1):
        expected, half = model._predict(h, ts)
        assert (mean, low, high) == (expected, expected - half, expected + half)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(-1e12, 1e12), st.sampled_from([math.nan, math.inf, -math.inf])),
        max_size=200,
    )
)
def test_input_drift_takes_any_floats_and_counts_what_it_reports(values: list[float]) -> None:
    from riffle.operators.models.drift import InputDrift

    watch = InputDrift()
    found = sum(watch.update(v) for v in values)
    assert found == watch.detections
    finite = [v for v in values if math.isfinite(v)]
    assert math.isfinite(watch.level) or not finite
