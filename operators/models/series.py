"""The models of every series of one shard, fed with final windows.

:class:`ShardModels` is what the dataflow's model stage keeps per
aggregation shard: a dict from series to its detector and forecaster,
created on the first final window of a series whose metric has an
``anomaly:`` or ``forecast:`` block. A window older than or equal to the
last one a series learned (a replay, or a window emitted again) is not
learned twice; its result is emitted again unchanged so idempotent sinks
rewrite the same row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from riffle.config.models import AnomalySpec, ForecastSpec
from riffle.operators.models.base import AnomalyDetector, AnomalyScore, Forecast, label_for
from riffle.operators.models.drift import ErrorDrift, InputDrift
from riffle.operators.models.forecast import ForecastSkill, HoltWintersForecaster, _smape
from riffle.operators.models.registry import make_detector
from riffle.operators.records import Dims, WindowResult

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class AnomalyRecord:
    """A detector's verdict on one final window of one series."""

    tenant: str
    metric: str
    dims: Dims
    window_start: int
    detector: str
    result: AnomalyScore
    drift: bool = False
    """ADWIN found the detector's error level changed at this window."""
    error_level: float = 0.0
    drifts: int = 0
    """Error drifts of this series' detector so far."""
    input_drift: bool = False
    """ADWIN found the series' input level changed at this window."""
    input_drifts: int = 0
    input_level: float = 0.0


@dataclass(frozen=True, slots=True)
class ForecastRecord:
    """A forecast issued after one final window of one series, with the model's skill."""

    tenant: str
    metric: str
    dims: Dims
    window_start: int
    forecast: Forecast
    skill: ForecastSkill
    drift: bool = False
    """ADWIN found the one-step forecast error level changed at this window."""
    error_level: float = 0.0
    drifts: int = 0
    """Error drifts of this series' forecaster so far."""
    input_drift: bool = False
    """ADWIN found the series' input level changed at this window (set on the
    forecast record only when the series has no detector, so it counts once)."""
    input_drifts: int = 0
    input_level: float = 0.0


ModelRecord = AnomalyRecord | ForecastRecord


def default_season(window_ms: int) -> int:
    """A day's worth of windows when that is at most 1440, else no seasonality."""
    per_day = DAY_MS // window_ms
    return per_day if per_day <= 1440 else 0


class SeriesModels:
    """One series' detector and forecaster, and what it said last."""

    __slots__ = (
        "detector",
        "detector_drift",
        "forecast_drift",
        "forecaster",
        "input_drift",
        "last_anomaly",
        "last_forecast",
        "last_start",
    )

    def __init__(
        self, window_ms: int, anomaly: AnomalySpec | None, forecast: ForecastSpec | None
    ) -> None:
        self.detector: AnomalyDetector | None = None
        if anomaly is not None:
            kwargs = {"warning": anomaly.warning, "anomaly": anomaly.threshold}
            self.detector = (
                make_detector(anomaly.detector, **kwargs)
                if anomaly.detector == "riffle"
                else make_detector(anomaly.detector)
            )
        self.forecaster: HoltWintersForecaster | None = None
        if forecast is not None:
            season = forecast.season if forecast.season is not None else default_season(window_ms)
            self.forecaster = HoltWintersForecaster(
                step_ms=window_ms, season=season, level=forecast.level
            )
        self.detector_drift = ErrorDrift() if self.detector is not None else None
        self.forecast_drift = ErrorDrift() if self.forecaster is not None else None
        self.input_drift = InputDrift()
        self.last_start = -1
        self.last_anomaly: AnomalyRecord | None = None
        self.last_forecast: ForecastRecord | None = None


class ShardModels:
    """Every series' models of one shard; see the module docstring."""

    def __init__(
        self,
        metrics: Mapping[str, tuple[int, AnomalySpec | None, ForecastSpec | None]],
        state: dict[tuple[str, str, Dims], SeriesModels] | None = None,
    ) -> None:
        self.metrics = metrics
        self.series: dict[tuple[str, str, Dims], SeriesModels] = state or {}

    def apply(self, window: WindowResult, horizons: Mapping[str, int]) -> list[ModelRecord]:
        """The records for one final window (nothing for partials or unmodelled metrics)."""
        conf = self.metrics.get(window.metric)
        if conf is None or not window.is_final or window.value is None:
            return []
        window_ms, anomaly, forecast = conf
        key = (window.tenant, window.metric, window.dims)
        models = self.series.get(key)
        if models is None:
            models = self.series[key] = SeriesModels(window_ms, anomaly, forecast)
        if window.window_start <= models.last_start:
            if window.window_start == models.last_start:
                return [r for r in (models.last_anomaly, models.last_forecast) if r is not None]
            return []
        out: list[ModelRecord] = []
        inputs = getattr(models, "input_drift", None)  # absent in snapshots before it existed
        in_drift = inputs.update(window.value) if inputs is not None else False
        in_count = inputs.detections if inputs is not None else 0
        in_level = inputs.level if inputs is not None else 0.0
        if models.detector is not None:
            result = models.detector.update(window.window_start, window.value)
            if anomaly is not None and result.label not in ("learning",):
                label = label_for(result.score, anomaly.warning, anomaly.threshold)
                if label != result.label:
                    result = _relabel(result, label)
            watch = getattr(models, "detector_drift", None)
            drifted, level = False, 0.0
            if watch is not None and result.label != "learning":
                drifted, level = watch.update(_surprise(result) / 10.0), watch.level
            models.last_anomaly = AnomalyRecord(
                window.tenant,
                window.metric,
                window.dims,
                window.window_start,
                models.detector.name,
                result,
                drifted,
                level,
                watch.detections if watch is not None else 0,
                in_drift,
                in_count,
                in_level,
            )
            out.append(models.last_anomaly)
        if models.forecaster is not None:
            f_watch = getattr(models, "forecast_drift", None)
            f_drifted, f_level = False, 0.0
            previous = models.last_forecast
            if f_watch is not None and previous is not None and previous.forecast.points:
                ts, mean = previous.forecast.points[0][0], previous.forecast.points[0][1]
                if ts == window.window_start:
                    f_drifted = f_watch.update(_smape(window.value, mean) / 200.0)
                    f_level = f_watch.level
            models.forecaster.learn_one(window.window_start, window.value)
            models.last_forecast = ForecastRecord(
                window.tenant,
                window.metric,
                window.dims,
                window.window_start,
                models.forecaster.forecast(horizons.get(window.metric, 12)),
                models.forecaster.skill,
                f_drifted,
                f_level,
                f_watch.detections if f_watch is not None else 0,
                in_drift and models.detector is None,
                in_count,
                in_level,
            )
            out.append(models.last_forecast)
        models.last_start = window.window_start
        return out


def _surprise(result: AnomalyScore) -> float:
    """How many typical errors the value was from the expectation, capped at 10."""
    if result.expected is None or result.expected_high is None:
        return 0.0
    scale = (result.expected_high - result.expected) / 3.0
    if not scale > 0:
        return 0.0
    return min(10.0, abs(result.value - result.expected) / scale)


def _relabel(result: AnomalyScore, label: str) -> AnomalyScore:
    from dataclasses import replace

    return replace(result, label=label)  # type: ignore[arg-type]
