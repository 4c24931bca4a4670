"""The prediction stage: entity observations from the ingest stage → per-entity probabilities.

```
ingest ─▶ EntityUpdate (partition clock, observations)
            └─ fan out per prediction ─▶ predictions  stateful per prediction ─▶ prediction sink
```

The ingest stage (with an :class:`~operators.models.entities.EntityExtractor`)
emits one :class:`~dataflows.logic.EntityUpdate` per batch with observations
or a moved clock. Every prediction's key receives every partition's clock, so
its :class:`~operators.models.entities.EntityTracker` knows the watermark.
One key per prediction holds every tenant's model and open entities; its
snapshot is one pickle (bytes), cheap for Bytewax to copy each epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from riffle.config.predictions import PredictionSpec
from riffle.config.spec import PipelineSpec
from riffle.dataflows.logic import EntityUpdate, IngestOut
from riffle.dataflows.outputs import HotTarget, Output, StoreSink, Writer, emit
from riffle.operators.models.entities import (
    EntityTracker,
    ModelStatsRecord,
    Observation,
    PredictionOut,
    PredictionRecord,
)
from riffle.sinks.redis.predictions import RedisPredictionStore
from riffle.sinks.warehouse.base import Warehouse
from riffle.sinks.warehouse.predictions import PredictionStore

PredictionSnapshot = tuple[str, bytes]
"""``(prediction name, tracker snapshot)``."""


class PredictionTelemetry:
    """``riffle_predictions_*``: observations, resolutions and each model's rolling accuracy."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.observations = Counter(
            "riffle_predictions_observations",
            "Feature and outcome events seen, by prediction.",
            ["prediction"],
            registry=registry,
        )
        self.late = Counter(
            "riffle_predictions_late",
            "Events too late for the predictions (behind the partition clock less the lateness).",
            ["prediction"],
            registry=registry,
        )
        self.resolved = Counter(
            "riffle_predictions_resolved",
            "Entities resolved and learned, by prediction and outcome (positive, negative).",
            ["prediction", "outcome"],
            registry=registry,
        )
        self.logloss = Gauge(
            "riffle_predictions_logloss",
            "Rolling log-loss of the last tenant's model updated (model classifier) and of"
            " always predicting the base rate (model base_rate).",
            ["prediction", "model"],
            registry=registry,
        )
        self.accuracy = Gauge(
            "riffle_predictions_accuracy",
            "Rolling accuracy of the last tenant's model updated, beside the majority class.",
            ["prediction", "model"],
            registry=registry,
        )
        self.roc_auc = Gauge(
            "riffle_predictions_roc_auc",
            "Rolling ROC AUC of the last tenant's model updated (0.5 is chance).",
            ["prediction"],
            registry=registry,
        )
        self.open_entities = Gauge(
            "riffle_predictions_open_entities",
            "Entities awaiting their outcome, of the last tenant updated.",
            ["prediction"],
            registry=registry,
        )

    def record(self, name: str, update: EntityUpdate, out: Sequence[PredictionOut]) -> None:
        if update.observations:
            self.observations.labels(name).inc(len(update.observations))
        if update.late:
            self.late.labels(name).inc(update.late)
        for r in out:
            if isinstance(r, ModelStatsRecord):
                s = r.stats
                self.logloss.labels(name, "classifier").set(s.logloss)
                self.logloss.labels(name, "base_rate").set(s.base_logloss)
                self.accuracy.labels(name, "classifier").set(s.accuracy)
                self.accuracy.labels(name, "base_rate").set(s.base_accuracy)
                self.roc_auc.labels(name).set(s.roc_auc)
                self.open_entities.labels(name).set(r.open_entities)
            elif r.status != "open":
                self.resolved.labels(name, r.status).inc()


@lru_cache(maxsize=1)
def default_telemetry() -> PredictionTelemetry:
    """The process's prediction metrics on the default registry (registered once)."""
    return PredictionTelemetry()


PredictionInput = tuple[str, EntityUpdate]
"""``(prediction name, the partition's update with that prediction's observations)``."""


class PredictionLogic(StatefulBatchLogic[PredictionInput, PredictionOut, PredictionSnapshot]):
    """One prediction's tracker; learns its prediction's name from its first item or snapshot."""

    def __init__(
        self,
        predictions: dict[str, PredictionSpec],
        partitions: Sequence[str],
        lateness_ms: int,
        telemetry: PredictionTelemetry,
        resume: PredictionSnapshot | None,
    ) -> None:
        self.predictions = predictions
        self.partitions = list(partitions)
        self.lateness_ms = lateness_ms
        self.telemetry = telemetry
        self.name = ""
        self.tracker: EntityTracker | None = None
        if resume is not None:
            self.name, state = resume
            self.tracker = self._tracker(self.name).restore(state)

    def _tracker(self, name: str) -> EntityTracker:
        return EntityTracker(self.predictions[name], self.partitions, lateness_ms=self.lateness_ms)

    def on_batch(self, values: list[PredictionInput]) -> tuple[list[PredictionOut], bool]:
        out: list[PredictionOut] = []
        for name, update in values:
            if self.tracker is None:
                self.name, self.tracker = name, self._tracker(name)
            records = self.tracker.apply(update.partition, update.clock, update.observations)
            self.telemetry.record(self.name, update, records)
            out.extend(records)
        return out, self.RETAIN

    def on_eof(self) -> tuple[list[PredictionOut], bool]:
        # Only bounded inputs (files, tests) end: release what they held back.
        if self.tracker is None:
            return [], self.RETAIN
        return self.tracker.flush(), self.RETAIN

    def snapshot(self) -> PredictionSnapshot:
        assert self.tracker is not None  # a key's logic exists only once an item came
        return self.name, self.tracker.snapshot()


def _fan_out(names: Sequence[str]) -> Callable[[IngestOut], list[tuple[str, PredictionInput]]]:
    def split(item: IngestOut) -> list[tuple[str, PredictionInput]]:
        assert isinstance(item, EntityUpdate)
        by_index: dict[int, list[Observation]] = {}
        for obs in item.observations:
            by_index.setdefault(obs[1], []).append(obs)
        return [
            (
                name,
                (name, EntityUpdate(item.partition, item.clock, by_index.get(i, []), item.late)),
            )
            for i, name in enumerate(names)
        ]

    return split


def prediction_stage(
    items: Stream[IngestOut],
    spec: PipelineSpec,
    *,
    partitions: Sequence[str],
    lateness_ms: int,
    sink: Output[PredictionOut],
    telemetry: PredictionTelemetry | None = None,
) -> Stream[IngestOut]:
    """Route the ingest stage's entity updates to the spec's predictions; return the rest."""
    tele = telemetry or default_telemetry()
    predictions = {p.name: p for p in spec.predictions}
    split = op.branch("route_entities", items, lambda item: isinstance(item, EntityUpdate))
    keyed = op.flat_map("entities_by_prediction", split.trues, _fan_out(list(predictions)))
    records = op.key_rm(
        "prediction_drop_key",
        op.stateful_batch(
            "predictions",
            keyed,
            lambda resume: PredictionLogic(predictions, partitions, lateness_ms, tele, resume),
        ),
    )
    emit("prediction_sink", records, sink)
    return split.falses


class PredictionStoreSink(StoreSink[PredictionOut]):
    """Prediction records into the warehouse's ``predictions`` tables, then (with
    ``redis``) into :class:`~sinks.warehouse.predictions.RedisPredictionStore`."""

    name = "predictions"

    def stores(self, warehouse: Warehouse, hot: HotTarget | None) -> list[Writer[PredictionOut]]:
        out: list[Writer[PredictionOut]] = [PredictionStore(warehouse).write]
        return out if hot is None else [*out, RedisPredictionStore(*hot).write]


__all__ = ["PredictionRecord", "PredictionStoreSink", "PredictionTelemetry", "prediction_stage"]
