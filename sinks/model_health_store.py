"""The health of every series' models in the warehouse (DuckDB): table ``model_health``.

One row per (tenant, metric, series id, model) — model ``detector`` or
``forecaster`` — holding the model's error drifts and current error level
(ADWIN over its errors), the series' input drifts and level (ADWIN over its
values), and the last window it saw. Each row is the newest record's
cumulative figures, written last-write-wins, so a replay rewrites the same
row. ``/v1/models`` aggregates it per metric.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import duckdb
import orjson

from operators.models.series import AnomalyRecord, ModelRecord
from operators.records import series_id
from sinks.warehouse import DuckDBWarehouse

_DDL = """
CREATE TABLE IF NOT EXISTS model_health (
    tenant VARCHAR NOT NULL, metric VARCHAR NOT NULL, series_id VARCHAR NOT NULL,
    model VARCHAR NOT NULL, dims VARCHAR NOT NULL, window_start TIMESTAMP NOT NULL,
    drifts BIGINT NOT NULL, error_level DOUBLE NOT NULL, input_drifts BIGINT NOT NULL,
    input_level DOUBLE NOT NULL, updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant, metric, series_id, model)
);
"""

_UPSERT = """
INSERT OR REPLACE INTO model_health
SELECT t, m, s, mo, d, epoch_ms(w), dr, el, idr, il, epoch_ms(u) FROM (
    SELECT unnest(?::VARCHAR[]) AS t, unnest(?::VARCHAR[]) AS m, unnest(?::VARCHAR[]) AS s,
           unnest(?::VARCHAR[]) AS mo, unnest(?::VARCHAR[]) AS d, unnest(?::BIGINT[]) AS w,
           unnest(?::BIGINT[]) AS dr, unnest(?::DOUBLE[]) AS el, unnest(?::BIGINT[]) AS idr,
           unnest(?::DOUBLE[]) AS il, unnest(?::BIGINT[]) AS u
)
"""


class ModelHealthStore:
    """Reads and writes of ``model_health`` through a :class:`DuckDBWarehouse`'s file."""

    def __init__(self, warehouse: DuckDBWarehouse) -> None:
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
        rows = list(newest.items())
        now = int(time.time() * 1000)
        columns: list[list[Any]] = [
            [k[0] for k, _ in rows],
            [k[1] for k, _ in rows],
            [k[2] for k, _ in rows],
            [k[3] for k, _ in rows],
            [orjson.dumps(dict(r.dims)).decode() for _, r in rows],
            [r.window_start for _, r in rows],
            [r.drifts for _, r in rows],
            [r.error_level for _, r in rows],
            [r.input_drifts for _, r in rows],
            [r.input_level for _, r in rows],
            [now] * len(rows),
        ]

        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute("BEGIN TRANSACTION")
            con.execute(_DDL)
            con.execute(_UPSERT, columns)
            con.execute("COMMIT")

        self.warehouse._run(write, read_only=False)

    def summary(self, tenant: str) -> list[dict[str, Any]]:
        """Per metric and model: series, drifts of errors and inputs, mean error level."""
        if not self.warehouse.path.exists():
            return []

        def read(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
            found = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'model_health'"
            ).fetchone()
            if not found or not found[0]:
                return []
            cursor = con.execute(
                "SELECT metric, model, count(*) AS series, sum(drifts) AS error_drifts,"
                " avg(error_level) AS error_level, sum(input_drifts) AS input_drifts,"
                " epoch_ms(max(window_start)) AS last_window FROM model_health"
                " WHERE tenant = ? GROUP BY metric, model ORDER BY metric, model",
                [tenant],
            )
            names = [d[0] for d in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        return self.warehouse._run(read, read_only=True)
