"""Model results in the warehouse: tables ``anomalies`` and ``forecasts`` beside ``metric_windows``.

Both are keyed like ``metric_windows`` — ``(tenant, metric, series_id,
window_start)``, the window a detector scored or after which a forecast was
issued — and written by last-write-wins upserts, so a replayed window
rewrites its row. ``dims`` is JSON text; ``points`` of a forecast is a JSON
list of ``[ts_ms, mean, low, high]``. The columns are defined once in
:mod:`sinks.warehouse.tables` (``ANOMALIES``, ``FORECASTS``); :class:`ModelStore` works
on either warehouse engine through the generic ``upsert``/``select``. The row
shapes (:func:`anomaly_row`, :func:`forecast_row`) are the API's, and the hot copy
in Redis (:mod:`sinks.redis.model_results`) stores the same rows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from riffle.operators.models.series import AnomalyRecord, ForecastRecord, ModelRecord
from riffle.operators.records import series_id
from riffle.sinks.warehouse.base import Warehouse
from riffle.sinks.warehouse.query import Agg, Cmp, In, Select
from riffle.sinks.warehouse.tables import ANOMALIES, FORECASTS


def _finite(x: float | None) -> float | None:
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else x


_ANOMALY_COLUMNS = (
    "metric", "series_id", "dims", "window_start", "detector", "value", "score", "label",
    "expected", "expected_low", "expected_high", "deviation", "explanation",
)  # fmt: skip
_FORECAST_COLUMNS = (
    "series_id", "dims", "window_start", "level", "points", "n", "mae", "smape", "naive_mae",
    "naive_smape", "coverage",
)  # fmt: skip


class ModelStore:
    """Reads and writes of the model tables in a warehouse (either engine)."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def write(self, records: Sequence[ModelRecord]) -> None:
        """Upsert a batch of records (the last one per key wins)."""
        now = int(time.time() * 1000)
        anomalies: list[dict[str, Any]] = []
        forecasts: list[dict[str, Any]] = []
        for r in records:
            sid = series_id(r.metric, r.dims)
            if isinstance(r, AnomalyRecord):
                row = anomaly_row(r, sid)
                anomalies.append({**row, "tenant": r.tenant, "updated_at": now})
            else:
                row = forecast_row(r, sid)
                row["window_start"] = row.pop("issued_after")
                row["level"] = _finite(row["level"])
                forecasts.append({**row, "tenant": r.tenant, "metric": r.metric, "updated_at": now})
        if anomalies:
            self.warehouse.upsert(ANOMALIES, anomalies)
        if forecasts:
            self.warehouse.upsert(FORECASTS, forecasts)

    def anomalies(
        self,
        tenant: str,
        start_ms: int,
        end_ms: int,
        *,
        min_score: float = 0.0,
        limit: int = 500,
        metrics: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Scored windows of ``tenant`` in ``[start_ms, end_ms)`` with at least ``min_score``
        (of ``metrics`` only, when given)."""
        where: tuple[Cmp | In, ...] = (
            Cmp("tenant", "=", tenant),
            Cmp("score", ">=", min_score),
            Cmp("window_start", ">=", start_ms),
            Cmp("window_start", "<", end_ms),
        )
        if metrics is not None:
            where += (In("metric", tuple(metrics)),)
        return self.warehouse.select(
            Select(
                ANOMALIES,
                columns=_ANOMALY_COLUMNS,
                where=where,
                order_by=("window_start DESC", "score DESC"),
                limit=limit,
            )
        )

    def latest_forecasts(self, tenant: str, metric: str) -> list[dict[str, Any]]:
        """The newest forecast of every series of ``metric``."""
        rows = self.warehouse.select(
            Select(
                FORECASTS,
                columns=_FORECAST_COLUMNS,
                where=(Cmp("tenant", "=", tenant), Cmp("metric", "=", metric)),
                latest_per=("series_id",),
                latest_by=("window_start DESC",),
                order_by=("series_id ASC",),
            )
        )
        for row in rows:
            row["issued_after"] = row.pop("window_start")
        return [{k: row[k] for k in ("series_id", "dims", "issued_after", *_FORECAST_COLUMNS[3:])}
                for row in rows]  # fmt: skip

    def health(self, tenant: str) -> list[dict[str, Any]]:
        """Per metric: series scored, alert rate, and mean forecast skill figures."""
        anomalies = self.warehouse.select(
            Select(
                ANOMALIES,
                columns=(
                    "metric",
                    Agg("any_value", "detector", "detector"),
                    Agg("count_distinct", "series_id", "series"),
                    Agg("count", None, "scored"),
                    Agg("share", "label", "alert_rate", "anomaly"),
                    Agg("max", "window_start", "last_window"),
                ),
                where=(Cmp("tenant", "=", tenant),),
                group_by=("metric",),
                order_by=("metric ASC",),
            )
        )
        latest = Select(
            FORECASTS,
            where=(Cmp("tenant", "=", tenant),),
            latest_per=("series_id",),
            latest_by=("window_start DESC",),
        )
        forecasts = self.warehouse.select(
            Select(
                FORECASTS,
                columns=(
                    "metric",
                    Agg("count", None, "series"),
                    *(Agg("avg", c, c) for c in ("smape", "naive_smape", "mae", "naive_mae")),
                    Agg("avg", "coverage", "coverage"),
                ),
                source=latest,
                group_by=("metric",),
                order_by=("metric ASC",),
            )
        )
        return [{"kind": "anomaly", **row} for row in anomalies] + [
            {"kind": "forecast", **row} for row in forecasts
        ]


def anomaly_row(r: AnomalyRecord, sid: str) -> dict[str, Any]:
    """An anomaly record as the API row (``dims`` and ``points`` still JSON text)."""
    return {
        "metric": r.metric,
        "series_id": sid,
        "dims": orjson.dumps(dict(r.dims)).decode(),
        "window_start": r.window_start,
        "detector": r.detector,
        "value": _finite(r.result.value),
        "score": r.result.score,
        "label": r.result.label,
        "expected": _finite(r.result.expected),
        "expected_low": _finite(r.result.expected_low),
        "expected_high": _finite(r.result.expected_high),
        "deviation": r.result.deviation,
        "explanation": r.result.explanation,
    }


def forecast_row(r: ForecastRecord, sid: str) -> dict[str, Any]:
    """A forecast record as the API row."""
    s = r.skill
    return {
        "series_id": sid,
        "dims": orjson.dumps(dict(r.dims)).decode(),
        "issued_after": r.window_start,
        "level": r.forecast.level,
        "points": orjson.dumps([list(p) for p in r.forecast.points]).decode(),
        "n": s.n,
        "mae": _finite(s.mae),
        "smape": _finite(s.smape),
        "naive_mae": _finite(s.naive_mae),
        "naive_smape": _finite(s.naive_smape),
        "coverage": _finite(s.coverage),
    }
