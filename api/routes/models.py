"""``/v1/anomalies``, ``/v1/forecasts/{metric}`` and ``/v1/models``: what the online models said."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Query

from api.deps import ServicesDep, Spec, Tenant
from api.errors import ApiError
from api.times import parse_instant
from sinks.model_store import ModelStore
from sinks.warehouse import DuckDBWarehouse

router = APIRouter(tags=["models"])


def _store(app: ServicesDep) -> ModelStore:
    if not isinstance(app.warehouse, DuckDBWarehouse):
        raise ApiError(
            501,
            "not_implemented",
            "model results are kept in the DuckDB warehouse only; BigQuery tables for "
            "anomalies and forecasts are not built yet",
        )
    return ModelStore(app.warehouse)


def _dims(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["dims"] = orjson.loads(row["dims"])
        if "points" in row:
            row["points"] = [
                {"ts": p[0], "mean": p[1], "low": p[2], "high": p[3]}
                for p in orjson.loads(row["points"])
            ]
    return rows


@router.get("/v1/anomalies", operation_id="listAnomalies", summary="Scored windows, newest first")
def list_anomalies(
    app: ServicesDep,
    tenant: Tenant,
    start: str | None = Query(None, description="Same forms as the series API; default -24h."),
    end: str | None = Query(None, description="Default now."),
    min_score: float = Query(0.0, ge=0, le=1, description="Only scores at least this."),
    label: str | None = Query(None, description="Only this label (anomaly, warning, normal)."),
    limit: int = Query(500, ge=1, le=10_000),
) -> dict[str, Any]:
    """Anomaly scores of every modelled series in ``[start, end)``."""
    now = int(time.time() * 1000)
    try:
        end_ms = parse_instant(end, now) if end else now
        start_ms = parse_instant(start, now) if start else end_ms - 86_400_000
    except ValueError as exc:
        raise ApiError(400, "bad_time", str(exc)) from exc
    rows = _store(app).anomalies(tenant, start_ms, end_ms, min_score=min_score, limit=limit)
    if label is not None:
        rows = [r for r in rows if r["label"] == label]
    return {"anomalies": _dims(rows)}


@router.get(
    "/v1/forecasts/{metric}",
    operation_id="getForecasts",
    summary="The newest forecast of every series of a metric",
)
def get_forecasts(metric: str, app: ServicesDep, spec: Spec, tenant: Tenant) -> dict[str, Any]:
    """Forecasts with intervals, and each series' running sMAPE/MAE beside seasonal-naive."""
    found = spec.metric(metric)
    if found is None:
        raise ApiError(404, "unknown_metric", f"no metric named {metric!r}")
    if found.forecast is None:
        raise ApiError(404, "not_forecast", f"metric {metric!r} has no forecast: block")
    return {"metric": metric, "forecasts": _dims(_store(app).latest_forecasts(tenant, metric))}


@router.get("/v1/models", operation_id="listModels", summary="Health of every model")
def list_models(app: ServicesDep, spec: Spec, tenant: Tenant) -> dict[str, Any]:
    """Configured models per metric, with alert rate and forecast skill measured so far."""
    configured = [
        {
            "metric": m.name,
            "anomaly": m.anomaly.model_dump() if m.anomaly else None,
            "forecast": m.forecast.model_dump() if m.forecast else None,
        }
        for m in spec.metrics
        if m.anomaly is not None or m.forecast is not None
    ]
    return {"configured": configured, "health": _store(app).health(tenant)}
