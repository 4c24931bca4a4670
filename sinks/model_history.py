"""Stored model results as alert observations, for simulating anomaly and forecast rules.

Reads the ``anomalies`` and ``forecasts`` tables (layout in :mod:`sinks.model_store`)
of one metric and turns each row into the :class:`~operators.alerts.Observation`
the alert stage would have received from the model stage: an anomaly score at
the end of the scored window, or the one-step interval a forecast gave for the
window after the one it was issued on.
"""

from __future__ import annotations

import orjson

from operators.alerts import Observation
from sinks.model_store import ModelStore
from sinks.warehouse import DuckDBWarehouse


def _dims(raw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(orjson.loads(raw).items()))


def anomaly_observations(
    warehouse: DuckDBWarehouse, tenant: str, metric: str, window_ms: int, start: int, end: int
) -> list[Observation]:
    """Scores of windows starting in ``[start, end)``, oldest first."""
    rows = ModelStore(warehouse)._read(
        "anomalies",
        "SELECT dims, epoch_ms(window_start) AS ws, value, score FROM anomalies"
        " WHERE tenant = ? AND metric = ?"
        " AND window_start >= epoch_ms(?::BIGINT) AND window_start < epoch_ms(?::BIGINT)"
        " ORDER BY window_start",
        [tenant, metric, start, end],
    )
    return [
        Observation(
            tenant, metric, _dims(r["dims"]), r["ws"] + window_ms, r["value"], score=r["score"]
        )
        for r in rows
    ]


def forecast_observations(
    warehouse: DuckDBWarehouse, tenant: str, metric: str, window_ms: int, start: int, end: int
) -> list[Observation]:
    """One-step intervals of forecasts issued after windows starting in ``[start, end)``."""
    rows = ModelStore(warehouse)._read(
        "forecasts",
        "SELECT dims, points, n FROM forecasts WHERE tenant = ? AND metric = ?"
        " AND window_start >= epoch_ms(?::BIGINT) AND window_start < epoch_ms(?::BIGINT)"
        " ORDER BY window_start",
        [tenant, metric, start, end],
    )
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
