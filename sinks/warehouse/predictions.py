"""Per-entity predictions in the warehouse.

Tables (defined once in :mod:`sinks.warehouse.tables`, either warehouse engine;
last-write-wins upserts, so a replayed release rewrites the same rows):

``predictions``
    one row per (tenant, entity type, entity id, prediction): the newest
    probability, the status (``open``, ``positive``, ``negative``), the event
    time it refers to, the entity's event count and the model's learned
    count when it answered.
``prediction_models``
    one row per (tenant, prediction): the model's rolling log-loss, ROC AUC
    and accuracy beside the base-rate baseline, learned and positive counts,
    open and dropped entities, and the watermark of the release.

The hot copy in Redis, rows of the same shapes, is :mod:`sinks.redis.predictions`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from riffle.operators.models.entities import ModelStatsRecord, PredictionOut, PredictionRecord
from riffle.sinks.warehouse.base import Warehouse
from riffle.sinks.warehouse.query import Cmp, Select
from riffle.sinks.warehouse.tables import PREDICTION_MODELS, PREDICTIONS

_ENTITY_COLUMNS = ("prediction", "ts", "probability", "status", "events", "learned")
_MODEL_COLUMNS = (
    "prediction", "entity_type", "watermark", "learned", "positives", "logloss", "base_logloss",
    "roc_auc", "accuracy", "base_accuracy", "open_entities", "dropped",
)  # fmt: skip


def split_records(
    records: Sequence[PredictionOut],
) -> tuple[list[PredictionRecord], list[ModelStatsRecord]]:
    """The last record per key of each kind, in first-seen key order."""
    entities: dict[tuple[str, str, str, str], PredictionRecord] = {}
    models: dict[tuple[str, str], ModelStatsRecord] = {}
    for r in records:
        if isinstance(r, PredictionRecord):
            entities[(r.tenant, r.entity_type, r.entity_id, r.prediction)] = r
        else:
            models[(r.tenant, r.prediction)] = r
    return list(entities.values()), list(models.values())


def entity_row(r: PredictionRecord) -> dict[str, Any]:
    """A prediction record as the API row."""
    return {
        "prediction": r.prediction,
        "ts": r.ts,
        "probability": r.probability,
        "status": r.status,
        "events": r.events,
        "learned": r.learned,
    }


def model_row(r: ModelStatsRecord) -> dict[str, Any]:
    """A model stats record as the API row."""
    s = r.stats
    return {
        "prediction": r.prediction,
        "entity_type": r.entity_type,
        "watermark": r.watermark,
        "learned": s.learned,
        "positives": s.positives,
        "logloss": s.logloss,
        "base_logloss": s.base_logloss,
        "roc_auc": s.roc_auc,
        "accuracy": s.accuracy,
        "base_accuracy": s.base_accuracy,
        "open_entities": r.open_entities,
        "dropped": r.dropped,
    }


class PredictionStore:
    """Reads and writes of the prediction tables in a warehouse (either engine)."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def write(self, records: Sequence[PredictionOut]) -> None:
        """Upsert a batch (the last record per key wins)."""
        entities, models = split_records(records)
        now = int(time.time() * 1000)
        if entities:
            self.warehouse.upsert(
                PREDICTIONS,
                [
                    {
                        **entity_row(r),
                        "tenant": r.tenant,
                        "entity_type": r.entity_type,
                        "entity_id": r.entity_id,
                        "updated_at": now,
                    }
                    for r in entities
                ],
            )
        if models:
            self.warehouse.upsert(
                PREDICTION_MODELS,
                [{**model_row(m), "tenant": m.tenant, "updated_at": now} for m in models],
            )

    def entity(self, tenant: str, entity_type: str, entity_id: str) -> list[dict[str, Any]]:
        """Every prediction's newest row for one entity, by prediction name."""
        return self.warehouse.select(
            Select(
                PREDICTIONS,
                columns=_ENTITY_COLUMNS,
                where=(
                    Cmp("tenant", "=", tenant),
                    Cmp("entity_type", "=", entity_type),
                    Cmp("entity_id", "=", entity_id),
                ),
                order_by=("prediction ASC",),
            )
        )

    def models(self, tenant: str) -> list[dict[str, Any]]:
        """Every prediction model of ``tenant`` with its rolling accuracy."""
        return self.warehouse.select(
            Select(
                PREDICTION_MODELS,
                columns=_MODEL_COLUMNS,
                where=(Cmp("tenant", "=", tenant),),
                order_by=("prediction ASC",),
            )
        )
