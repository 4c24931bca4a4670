"""The model stage: final windows → anomaly scores and forecasts, keyed by shard.

```
finals ─▶ key by shard (series hash) ─▶ models  stateful per shard ─▶ model sink
```

Shards are keyed like the windows stage (``m07``), with a stable hash of the
series so every process routes a series to the same shard. The snapshot of a
shard is its dict of :class:`~operators.models.series.SeriesModels`, whose
models hold a few dozen floats each (see ``../shared/BYTEWAX.md``: snapshots
deep-copy every touched key's state each epoch).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from riffle.config.models import AnomalySpec, ForecastSpec
from riffle.config.spec import PipelineSpec
from riffle.dataflows.outputs import HotTarget, Output, StoreSink, Writer, emit
from riffle.operators.models.series import (
    AnomalyRecord,
    ForecastRecord,
    ModelRecord,
    SeriesModels,
    ShardModels,
)
from riffle.operators.records import Dims, WindowResult
from riffle.sinks.redis.model_results import RedisModelStore
from riffle.sinks.warehouse.base import Warehouse
from riffle.sinks.warehouse.model_health import ModelHealthStore
from riffle.sinks.warehouse.model_results import ModelStore

ShardSnapshot = dict[tuple[str, str, Dims], SeriesModels]


class ModelTelemetry:
    """``riffle_models_*``: scores and alerts per detector, forecast skill per metric."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.scored = Counter(
            "riffle_models_scored", "Windows scored, by detector.", ["detector"], registry=registry
        )
        self.alerts = Counter(
            "riffle_models_alerts",
            "Windows labelled anomaly, by detector and metric.",
            ["detector", "metric"],
            registry=registry,
        )
        self.smape = Gauge(
            "riffle_models_forecast_smape_percent",
            "Rolling one-step sMAPE of the last forecast series updated, by metric and model.",
            ["metric", "model"],
            registry=registry,
        )

        self.drifts = Counter(
            "riffle_models_drift",
            "ADWIN drifts of model errors, by metric and model (detector or forecaster).",
            ["metric", "model"],
            registry=registry,
        )
        self.error_level = Gauge(
            "riffle_models_error_level",
            "Mean error in ADWIN's current window of the last series updated (0..1):"
            " detector surprise / 10, forecaster one-step sMAPE / 200.",
            ["metric", "model"],
            registry=registry,
        )

        self.input_drifts = Counter(
            "riffle_models_input_drift",
            "ADWIN drifts of the modelled series' input values, by metric.",
            ["metric"],
            registry=registry,
        )
        self.input_level = Gauge(
            "riffle_models_input_level",
            "Mean input value in ADWIN's current window of the last series updated, by metric.",
            ["metric"],
            registry=registry,
        )
        self.alert_rate = Gauge(
            "riffle_models_alert_rate",
            "Share of scored windows labelled anomaly since the process started,"
            " by detector and metric.",
            ["detector", "metric"],
            registry=registry,
        )
        self.skill = Gauge(
            "riffle_models_forecast_skill",
            "1 - MAE / seasonal-naive MAE of the last forecast series updated (> 0: better"
            " than seasonal-naive), by metric.",
            ["metric"],
            registry=registry,
        )
        self._counts: dict[tuple[str, str], list[int]] = {}

    def record(self, records: list[ModelRecord]) -> None:
        for r in records:
            model = "detector" if isinstance(r, AnomalyRecord) else "forecaster"
            if r.drift:
                self.drifts.labels(r.metric, model).inc()
            if r.error_level:
                self.error_level.labels(r.metric, model).set(r.error_level)
            if r.input_drift:
                self.input_drifts.labels(r.metric).inc()
            if r.input_level:
                self.input_level.labels(r.metric).set(r.input_level)
            if isinstance(r, AnomalyRecord):
                self.scored.labels(r.detector).inc()
                counts = self._counts.setdefault((r.detector, r.metric), [0, 0])
                counts[0] += 1
                if r.result.label == "anomaly":
                    self.alerts.labels(r.detector, r.metric).inc()
                    counts[1] += 1
                self.alert_rate.labels(r.detector, r.metric).set(counts[1] / counts[0])
            elif r.skill.n:
                self.smape.labels(r.metric, "holt_winters").set(r.skill.smape)
                self.smape.labels(r.metric, "seasonal_naive").set(r.skill.naive_smape)
                self.skill.labels(r.metric).set(r.skill.skill)


@lru_cache(maxsize=1)
def default_telemetry() -> ModelTelemetry:
    """The process's model metrics on the default registry (registered once)."""
    return ModelTelemetry()


def modelled_metrics(
    spec: PipelineSpec,
) -> dict[str, tuple[int, AnomalySpec | None, ForecastSpec | None]]:
    """The metrics with an ``anomaly:`` or ``forecast:`` block: window length and blocks."""
    return {
        m.name: (m.window_ms, m.anomaly, m.forecast)
        for m in spec.metrics
        if m.anomaly is not None or m.forecast is not None
    }


def shard_key(result: WindowResult, shards: int) -> str:
    """A series' model shard, from its stable id (never Python's ``hash``)."""
    return f"m{int(result.series[:8], 16) % shards:03d}"


class ModelLogic(StatefulBatchLogic[WindowResult, ModelRecord, ShardSnapshot]):
    """One shard's models; emits a record per modelled final window."""

    def __init__(
        self,
        metrics: Mapping[str, tuple[int, AnomalySpec | None, ForecastSpec | None]],
        telemetry: ModelTelemetry,
        resume: ShardSnapshot | None,
    ) -> None:
        self.models = ShardModels(metrics, resume)
        self.horizons = {
            name: conf[2].horizon for name, conf in metrics.items() if conf[2] is not None
        }
        self.telemetry = telemetry

    def on_batch(self, values: list[WindowResult]) -> tuple[list[ModelRecord], bool]:
        out: list[ModelRecord] = []
        for window in sorted(values, key=lambda w: w.window_start):
            out.extend(self.models.apply(window, self.horizons))
        self.telemetry.record(out)
        return out, self.RETAIN

    def snapshot(self) -> ShardSnapshot:
        return self.models.series


def model_stage(
    results: Stream[WindowResult],
    spec: PipelineSpec,
    *,
    shards: int,
    sink: Output[ModelRecord],
    telemetry: ModelTelemetry | None = None,
) -> Stream[ModelRecord] | None:
    """Attach the model stage to a flow's window results; ``None`` when no metric is modelled."""
    metrics = modelled_metrics(spec)
    if not metrics:
        return None
    tele = telemetry or default_telemetry()
    finals = op.filter("model_finals", results, lambda r: r.is_final and r.metric in metrics)
    keyed = op.key_on("model_shard", finals, lambda r: shard_key(r, shards))
    records = op.key_rm(
        "model_drop_key",
        op.stateful_batch("models", keyed, lambda resume: ModelLogic(metrics, tele, resume)),
    )
    emit("model_sink", records, sink)
    return records


class ModelStoreSink(StoreSink[ModelRecord]):
    """Model records into the warehouse's ``anomalies``, ``forecasts`` and ``model_health``,
    then (with ``redis``) into :class:`~sinks.warehouse.model_results.RedisModelStore`."""

    name = "models"

    def stores(self, warehouse: Warehouse, hot: HotTarget | None) -> list[Writer[ModelRecord]]:
        out: list[Writer[ModelRecord]] = [
            ModelStore(warehouse).write,
            ModelHealthStore(warehouse).write,
        ]
        return out if hot is None else [*out, RedisModelStore(*hot).write]


__all__ = ["ForecastRecord", "ModelLogic", "ModelStoreSink", "ModelTelemetry", "model_stage"]
