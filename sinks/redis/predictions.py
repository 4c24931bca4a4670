"""Per-entity predictions in Redis: the hot copy of the prediction rows.

Redis (``P`` prefix, ``T`` tenant, ``E`` entity type), both HASHes of JSON
rows shaped like the table rows, TTL the spec's hot retention:
``P:T:prediction:E:ID`` (prediction name → entity row) and
``P:T:prediction-model:E`` (prediction name → model row).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from riffle.operators.models.entities import PredictionOut
from riffle.sinks.warehouse.predictions import entity_row, model_row, split_records


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
        entities, models = split_records(records)
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
