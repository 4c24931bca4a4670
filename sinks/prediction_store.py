"""Per-entity predictions in the warehouse (DuckDB) and in Redis (hot).

Tables (DuckDB, beside ``metric_windows``; last-write-wins upserts, so a
replayed release rewrites the same rows):

``predictions``
    one row per (tenant, entity type, entity id, prediction): the newest
    probability, the status (``open``, ``positive``, ``negative``), the event
    time it refers to, the entity's event count and the model's learned
    count when it answered.
``prediction_models``
    one row per (tenant, prediction): the model's rolling log-loss, ROC AUC
    and accuracy beside the base-rate baseline, learned and positive counts,
    open and dropped entities, and the watermark of the release.

Redis (``P`` prefix, ``T`` tenant, ``E`` entity type), both HASHes of JSON
rows shaped like the table rows, TTL the spec's hot retention:
``P:T:prediction:E:ID`` (prediction name → entity row) and
``P:T:prediction-model:E`` (prediction name → model row).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import duckdb
import orjson

from operators.models.entities import ModelStatsRecord, PredictionOut, PredictionRecord
from sinks.warehouse import DuckDBWarehouse

_DDL = """
CREATE TABLE IF NOT EXISTS predictions (
    tenant VARCHAR NOT NULL, entity_type VARCHAR NOT NULL, entity_id VARCHAR NOT NULL,
    prediction VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, probability DOUBLE NOT NULL,
    status VARCHAR NOT NULL, events BIGINT NOT NULL, learned BIGINT NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant, entity_type, entity_id, prediction)
);
CREATE TABLE IF NOT EXISTS prediction_models (
    tenant VARCHAR NOT NULL, prediction VARCHAR NOT NULL, entity_type VARCHAR NOT NULL,
    watermark TIMESTAMP NOT NULL, learned BIGINT NOT NULL, positives BIGINT NOT NULL,
    logloss DOUBLE NOT NULL, base_logloss DOUBLE NOT NULL, roc_auc DOUBLE NOT NULL,
    accuracy DOUBLE NOT NULL, base_accuracy DOUBLE NOT NULL, open_entities BIGINT NOT NULL,
    dropped BIGINT NOT NULL, updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant, prediction)
);
"""

_UPSERT_PREDICTIONS = """
INSERT OR REPLACE INTO predictions
SELECT t, e, i, p, epoch_ms(ts), pr, st, ev, le, epoch_ms(u) FROM (
    SELECT unnest(?::VARCHAR[]) AS t, unnest(?::VARCHAR[]) AS e, unnest(?::VARCHAR[]) AS i,
           unnest(?::VARCHAR[]) AS p, unnest(?::BIGINT[]) AS ts, unnest(?::DOUBLE[]) AS pr,
           unnest(?::VARCHAR[]) AS st, unnest(?::BIGINT[]) AS ev, unnest(?::BIGINT[]) AS le,
           unnest(?::BIGINT[]) AS u
)
"""

_UPSERT_MODELS = """
INSERT OR REPLACE INTO prediction_models
SELECT t, p, e, epoch_ms(w), le, po, ll, bll, auc, acc, bacc, op, dr, epoch_ms(u) FROM (
    SELECT unnest(?::VARCHAR[]) AS t, unnest(?::VARCHAR[]) AS p, unnest(?::VARCHAR[]) AS e,
           unnest(?::BIGINT[]) AS w, unnest(?::BIGINT[]) AS le, unnest(?::BIGINT[]) AS po,
           unnest(?::DOUBLE[]) AS ll, unnest(?::DOUBLE[]) AS bll, unnest(?::DOUBLE[]) AS auc,
           unnest(?::DOUBLE[]) AS acc, unnest(?::DOUBLE[]) AS bacc, unnest(?::BIGINT[]) AS op,
           unnest(?::BIGINT[]) AS dr, unnest(?::BIGINT[]) AS u
)
"""

_MODEL_COLUMNS = (
    "prediction, entity_type, epoch_ms(watermark) AS watermark, learned, positives, logloss,"
    " base_logloss, roc_auc, accuracy, base_accuracy, open_entities, dropped"
)


def _split(
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
    """Reads and writes of the prediction tables through a :class:`DuckDBWarehouse`'s file."""

    def __init__(self, warehouse: DuckDBWarehouse) -> None:
        self.warehouse = warehouse

    def write(self, records: Sequence[PredictionOut]) -> None:
        """Upsert a batch (the last record per key wins)."""
        entities, models = _split(records)
        if not entities and not models:
            return
        now = int(time.time() * 1000)
        e_cols: list[list[Any]] = [
            [r.tenant for r in entities],
            [r.entity_type for r in entities],
            [r.entity_id for r in entities],
            [r.prediction for r in entities],
            [r.ts for r in entities],
            [r.probability for r in entities],
            [r.status for r in entities],
            [r.events for r in entities],
            [r.learned for r in entities],
            [now] * len(entities),
        ]
        m_cols: list[list[Any]] = [
            [r.tenant for r in models],
            [r.prediction for r in models],
            [r.entity_type for r in models],
            [r.watermark for r in models],
            [r.stats.learned for r in models],
            [r.stats.positives for r in models],
            [r.stats.logloss for r in models],
            [r.stats.base_logloss for r in models],
            [r.stats.roc_auc for r in models],
            [r.stats.accuracy for r in models],
            [r.stats.base_accuracy for r in models],
            [r.open_entities for r in models],
            [r.dropped for r in models],
            [now] * len(models),
        ]

        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute("BEGIN TRANSACTION")
            con.execute(_DDL)
            if entities:
                con.execute(_UPSERT_PREDICTIONS, e_cols)
            if models:
                con.execute(_UPSERT_MODELS, m_cols)
            con.execute("COMMIT")

        self.warehouse._run(write, read_only=False)

    def _read(self, table: str, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        if not self.warehouse.path.exists():
            return []

        def read(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
            found = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
            ).fetchone()
            if not found or not found[0]:
                return []
            cursor = con.execute(sql, params)
            names = [d[0] for d in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        return self.warehouse._run(read, read_only=True)

    def entity(self, tenant: str, entity_type: str, entity_id: str) -> list[dict[str, Any]]:
        """Every prediction's newest row for one entity, by prediction name."""
        return self._read(
            "predictions",
            "SELECT prediction, epoch_ms(ts) AS ts, probability, status, events, learned"
            " FROM predictions WHERE tenant = ? AND entity_type = ? AND entity_id = ?"
            " ORDER BY prediction",
            [tenant, entity_type, entity_id],
        )

    def models(self, tenant: str) -> list[dict[str, Any]]:
        """Every prediction model of ``tenant`` with its rolling accuracy."""
        return self._read(
            "prediction_models",
            f"SELECT {_MODEL_COLUMNS} FROM prediction_models"  # noqa: S608 - fixed columns
            " WHERE tenant = ? ORDER BY prediction",
            [tenant],
        )


class RedisPredictionStore:
    """The hot copy of the prediction rows; key layout in the module docstring."""

    def __init__(self, client: Any, prefix: str, hot_ttl_seconds: int) -> None:
        if hot_ttl_seconds <= 0:
            raise ValueError(f"hot_ttl_seconds must be positive (got {hot_ttl_seconds})")
        self.client = client
        self.prefix = prefix
        self.ttl_ms = hot_ttl_seconds * 1000

    def entity_key(self, tenant: str, entity_type: str, entity_id: str) -> str:
        return f"{self.prefix}:{tenant}:prediction:{entity_type}:{entity_id}"

    def model_key(self, tenant: str, entity_type: str) -> str:
        return f"{self.prefix}:{tenant}:prediction-model:{entity_type}"

    def write(self, records: Sequence[PredictionOut]) -> None:
        """Upsert a batch in one pipelined round trip; the last record per key wins."""
        entities, models = _split(records)
        if not entities and not models:
            return
        pipe = self.client.pipeline(transaction=False)
        for r in entities:
            key = self.entity_key(r.tenant, r.entity_type, r.entity_id)
            pipe.hset(key, r.prediction, orjson.dumps(entity_row(r)))
            pipe.pexpire(key, self.ttl_ms)
        for m in models:
            key = self.model_key(m.tenant, m.entity_type)
            pipe.hset(key, m.prediction, orjson.dumps(model_row(m)))
            pipe.pexpire(key, self.ttl_ms)
        pipe.execute()

    def entity(self, tenant: str, entity_type: str, entity_id: str) -> list[dict[str, Any]]:
        """Like :meth:`PredictionStore.entity`, from the hot copy."""
        raw = self.client.hgetall(self.entity_key(tenant, entity_type, entity_id))
        return sorted((orjson.loads(v) for v in raw.values()), key=lambda r: r["prediction"])

    def models(self, tenant: str, entity_type: str) -> list[dict[str, Any]]:
        """Like :meth:`PredictionStore.models` for one entity type, from the hot copy."""
        raw = self.client.hgetall(self.model_key(tenant, entity_type))
        return sorted((orjson.loads(v) for v in raw.values()), key=lambda r: r["prediction"])
