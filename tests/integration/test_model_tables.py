"""Predictions and model health on both warehouse engines: replays rewrite, never add.

The same rows must come back from DuckDB and from BigQuery (through its
dedup views), whatever order and how often a batch is written.
"""

from __future__ import annotations

from riffle.operators.models.base import AnomalyScore
from riffle.operators.models.classifier import ClassifierStats
from riffle.operators.models.entities import ModelStatsRecord, PredictionRecord
from riffle.operators.models.series import AnomalyRecord
from riffle.sinks.warehouse.model_health import ModelHealthStore
from riffle.sinks.warehouse.predictions import PredictionStore
from tests.warehouse_fixtures import WarehouseTarget

MIN = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % MIN


def _stats(learned: int, positives: int) -> ClassifierStats:
    return ClassifierStats(learned, positives, 0.2, 0.3, 0.8, 0.9, 0.85)


def test_predictions_upsert_per_entity_and_model(warehouse_target: WarehouseTarget) -> None:
    warehouse = warehouse_target.open()
    warehouse.init()
    store = PredictionStore(warehouse)
    first = [
        PredictionRecord("acme", "buy", "session", "s1", T0, 0.1, "open", 1, 10),
        PredictionRecord("acme", "buy", "session", "s2", T0, 0.2, "open", 1, 10),
        ModelStatsRecord("acme", "buy", "session", T0, _stats(10, 1), 2, 0),
        PredictionRecord("other", "buy", "session", "s1", T0, 0.9, "open", 1, 3),
    ]
    later = [
        PredictionRecord("acme", "buy", "session", "s1", T0 + MIN, 0.7, "positive", 4, 12),
        ModelStatsRecord("acme", "buy", "session", T0 + MIN, _stats(12, 2), 1, 0),
    ]
    store.write(first)
    store.write(later)
    store.write(later)  # a retried batch changes nothing

    s1 = store.entity("acme", "session", "s1")
    assert s1 == [
        {
            "prediction": "buy",
            "ts": T0 + MIN,
            "probability": 0.7,
            "status": "positive",
            "events": 4,
            "learned": 12,
        }
    ]
    assert [r["probability"] for r in store.entity("acme", "session", "s2")] == [0.2]
    assert [r["probability"] for r in store.entity("other", "session", "s1")] == [0.9]
    assert store.entity("acme", "session", "nobody") == []
    (model,) = store.models("acme")
    assert (model["learned"], model["positives"], model["watermark"]) == (12, 2, T0 + MIN)
    assert model["open_entities"] == 1


def _anomaly(start: int, drifts: int, level: float) -> AnomalyRecord:
    score = AnomalyScore(start, 5.0, 0.1, "normal", 5.0, 4.0, 6.0, 0.0, "within range")
    return AnomalyRecord(
        "acme", "views", (("country", "de"),), start, "riffle", score,
        error_level=level, drifts=drifts, input_drifts=drifts + 1, input_level=level * 2,
    )  # fmt: skip


def test_model_health_keeps_the_newest_window(warehouse_target: WarehouseTarget) -> None:
    warehouse = warehouse_target.open()
    warehouse.init()
    store = ModelHealthStore(warehouse)
    store.write([_anomaly(T0, 0, 1.0), _anomaly(T0 + MIN, 1, 2.0)])
    store.write([_anomaly(T0, 0, 1.0)])  # a replay of an older window does not win

    (row,) = store.summary("acme")
    assert row["metric"] == "views"
    assert row["model"] == "detector"
    assert (row["series"], row["error_drifts"], row["input_drifts"]) == (1, 1, 2)
    assert row["error_level"] == 2.0
    assert row["last_window"] == T0 + MIN
    assert store.summary("other") == []
