"""Stored model results as alert observations, for simulating anomaly and forecast rules.

Reads the ``anomalies`` and ``forecasts`` tables (either engine; layout in
:mod:`sinks.warehouse.tables`) of one metric and turns each row into the
:class:`~operators.alerts.observations.Observation`
the alert stage would have received from the model stage: an anomaly score at
the end of the scored window, or the one-step interval a forecast gave for the
window after the one it was issued on.
"""

from __future__ import annotations

from typing import Any

import orjson

from riffle.operators.alerts.observations import Observation
from riffle.sinks.warehouse.base import Warehouse
from riffle.sinks.warehouse.query import Cmp, Select
from riffle.sinks.warehouse.tables import ANOMALIES, FORECASTS, TableDef


def _dims(raw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(orjson.loads(raw).items()))


def _rows(
    warehouse: Warehouse,
    table: TableDef,
    columns: tuple[str, ...],
    tenant: str,
    metric: str,
    start: int,
    end: int,
) -> list[dict[str, Any]]:
    return warehouse.select(
        Select(
            table,
            columns=columns,
            where=(
                Cmp("tenant", "=", tenant),
                Cmp("metric", "=", metric),
                Cmp("window_start", ">=", start),
                Cmp("window_start", "<", end),
            ),
            order_by=("window_start ASC",),
        )
    )


def anomaly_observations(
    warehouse: Warehouse, tenant: str, metric: str, window_ms: int, start: int, end: int
) -> list[Observation]:
    """Scores of windows starting in ``[start, end)``, oldest first."""
    columns = ("dims", "window_start", "value", "score")
    rows = _rows(warehouse, ANOMALIES, columns, tenant, metric, start, end)
    return [
        Observation(
            tenant,
            metric,
            _dims(r["dims"]),
            r["window_start"] + window_ms,
            r["value"],
            score=r["score"],
        )
        for r in rows
    ]


def forecast_observations(
    warehouse: Warehouse, tenant: str, metric: str, window_ms: int, start: int, end: int
) -> list[Observation]:
    """One-step intervals of forecasts issued after windows starting in ``[start, end)``."""
    rows = _rows(warehouse, FORECASTS, ("dims", "points", "n"), tenant, metric, start, end)
    out = []
    for r in rows:
        points = orjson.loads(r["points"])
        if not points:
            continue
        ts, mean, low, high = points[0]
        if mean is None or low is None or high is None:  # not finite when stored
            continue
        out.append(
            Observation(
                tenant,
                metric,
                _dims(r["dims"]),
                int(ts) + window_ms,
                None,
                interval=(mean, low, high),
                history=int(r["n"]),
            )
        )
    return out
