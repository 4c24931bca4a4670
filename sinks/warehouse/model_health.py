"""The health of every series' models in the warehouse: table ``model_health``.

One row per (tenant, metric, series id, model) — model ``detector`` or
``forecaster`` — holding the model's error drifts and current error level
(ADWIN over its errors), the series' input drifts and level (ADWIN over its
values), and the last window it saw. Each row is the newest record's
cumulative figures and the row of the newest window wins, so a replay
rewrites the same row. The columns are defined once in :mod:`sinks.warehouse.tables`
(``MODEL_HEALTH``); either warehouse engine serves it. ``/v1/models``
aggregates it per metric.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from riffle.operators.models.series import AnomalyRecord, ModelRecord
from riffle.operators.records import series_id
from riffle.sinks.warehouse.base import Warehouse
from riffle.sinks.warehouse.query import Agg, Cmp, Select
from riffle.sinks.warehouse.tables import MODEL_HEALTH


class ModelHealthStore:
    """Reads and writes of ``model_health`` in a warehouse (either engine)."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def write(self, records: Sequence[ModelRecord]) -> None:
        """Upsert the newest record's figures per (tenant, metric, series, model)."""
        newest: dict[tuple[str, str, str, str], ModelRecord] = {}
        for r in records:
            model = "detector" if isinstance(r, AnomalyRecord) else "forecaster"
            key = (r.tenant, r.metric, series_id(r.metric, r.dims), model)
            held = newest.get(key)
            if held is None or held.window_start <= r.window_start:
                newest[key] = r
        if not newest:
            return
        now = int(time.time() * 1000)
        rows = [
            {
                "tenant": tenant,
                "metric": metric,
                "series_id": sid,
                "model": model,
                "dims": orjson.dumps(dict(r.dims)).decode(),
                "window_start": r.window_start,
                "drifts": r.drifts,
                "error_level": r.error_level,
                "input_drifts": r.input_drifts,
                "input_level": r.input_level,
                "updated_at": now,
            }
            for (tenant, metric, sid, model), r in newest.items()
        ]
        self.warehouse.upsert(MODEL_HEALTH, rows)

    def summary(self, tenant: str) -> list[dict[str, Any]]:
        """Per metric and model: series, drifts of errors and inputs, mean error level."""
        return self.warehouse.select(
            Select(
                MODEL_HEALTH,
                columns=(
                    "metric",
                    "model",
                    Agg("count", None, "series"),
                    Agg("sum", "drifts", "error_drifts"),
                    Agg("avg", "error_level", "error_level"),
                    Agg("sum", "input_drifts", "input_drifts"),
                    Agg("max", "window_start", "last_window"),
                ),
                where=(Cmp("tenant", "=", tenant),),
                group_by=("metric", "model"),
                order_by=("metric ASC", "model ASC"),
            )
        )
