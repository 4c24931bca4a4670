"""``/v1/anomalies``, ``/v1/forecasts/{metric}`` and ``/v1/models``: what the online models said."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import orjson
import redis
from fastapi import APIRouter, Query

from riffle.api.bodies import UNKNOWN_METRIC
from riffle.api.deps import HotModelResults, ModelHealth, ModelResults, Predictions, Spec, Tenant
from riffle.api.errors import ApiError
from riffle.api.params import Source
from riffle.api.routes.alerts import time_range
from riffle.api.routes.predictions import model_summary

router = APIRouter(tags=["models"])


def _dims(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["dims"] = orjson.loads(row["dims"])
        if "points" in row:
            row["points"] = [
                {"ts": p[0], "mean": p[1], "low": p[2], "high": p[3]}
                for p in orjson.loads(row["points"])
            ]
    return rows


@router.get(
    "/v1/anomalies",
    operation_id="listAnomalies",
    summary="Scored windows, newest first",
    responses=UNKNOWN_METRIC,
)
def list_anomalies(
    spec: Spec,
    warm: ModelResults,
    hot: HotModelResults,
    tenant: Tenant,
    start: str | None = Query(None, description="Window starts from; default end - 24h."),
    end: str | None = Query(None, description="Window starts before; default now."),
    metric: Annotated[
        list[str] | None, Query(description="Only these metrics (repeatable).")
    ] = None,
    min_score: float = Query(0.0, ge=0, le=1, description="Only scores at least this."),
    label: Annotated[
        Literal["anomaly", "warning", "normal"] | None, Query(description="Only this label.")
    ] = None,
    limit: int = Query(500, ge=1, le=10_000),
    source: Source = "auto",
) -> dict[str, Any]:
    """Anomaly scores of every modelled series in ``[start, end)``.

    400 ``bad_time``/``invalid_range``; 404 ``unknown_metric``.
    """
    now = int(time.time() * 1000)
    start_ms, end_ms = time_range(start, end, 86_400_000)
    modelled = [m.name for m in spec.metrics if m.anomaly is not None]
    if metric:
        unknown = [m for m in metric if spec.metric(m) is None]
        if unknown:
            raise ApiError(404, "unknown_metric", f"no metric named {unknown[0]!r}")
        modelled = [m for m in modelled if m in metric]
    rows: list[dict[str, Any]] = []
    used = "warehouse"
    if source == "hot" or (
        source == "auto" and start_ms >= now - spec.retention.hot.total_seconds() * 1000
    ):
        metrics = modelled
        try:
            rows = hot.anomalies(
                tenant, metrics, start_ms, end_ms, min_score=min_score, limit=limit
            )
        except redis.RedisError:
            if source == "hot":
                raise
        used = "hot"
    if source == "warehouse" or (source == "auto" and not rows):
        rows = warm.anomalies(
            tenant, start_ms, end_ms, min_score=min_score, limit=limit, metrics=modelled
        )
        used = "warehouse"
    if label is not None:
        rows = [r for r in rows if r["label"] == label]
    return {"anomalies": _dims(rows), "source": used}


@router.get(
    "/v1/forecasts/{metric}",
    operation_id="getForecasts",
    summary="The newest forecast of every series of a metric",
)
def get_forecasts(
    metric: str,
    spec: Spec,
    warm: ModelResults,
    hot: HotModelResults,
    tenant: Tenant,
    source: Source = "auto",
) -> dict[str, Any]:
    """Forecasts with intervals, and each series' running sMAPE/MAE beside seasonal-naive."""
    found = spec.metric(metric)
    if found is None:
        raise ApiError(404, "unknown_metric", f"no metric named {metric!r}")
    if found.forecast is None:
        raise ApiError(404, "not_forecast", f"metric {metric!r} has no forecast: block")
    rows: list[dict[str, Any]] = []
    used = "warehouse"
    if source in ("auto", "hot"):
        try:
            rows, used = hot.latest_forecasts(tenant, metric), "hot"
        except redis.RedisError:
            if source == "hot":
                raise
    if source == "warehouse" or (source == "auto" and not rows):
        rows, used = warm.latest_forecasts(tenant, metric), "warehouse"
    return {"metric": metric, "forecasts": _dims(rows), "source": used}


@router.get("/v1/models", operation_id="listModels", summary="Health of every model")
def list_models(
    spec: Spec,
    results: ModelResults,
    health_store: ModelHealth,
    prediction_store: Predictions,
    tenant: Tenant,
) -> dict[str, Any]:
    """Configured models per metric and their health: alert rate, forecast skill, drifts.

    ``health`` holds per metric the anomaly rows (series, alert rate) and the
    forecast rows (mean sMAPE/MAE beside seasonal-naive, ``skill`` = 1 - MAE /
    naive MAE); ``monitoring`` the ADWIN drifts of each model's errors and of
    the series' inputs; ``predictions`` each per-entity model's rolling
    accuracy beside its base-rate baseline.
    """
    configured = [
        {
            "metric": m.name,
            "anomaly": m.anomaly.model_dump() if m.anomaly else None,
            "forecast": m.forecast.model_dump() if m.forecast else None,
        }
        for m in spec.metrics
        if m.anomaly is not None or m.forecast is not None
    ]
    health = results.health(tenant)
    for row in health:
        if row["kind"] == "forecast":
            naive = row["naive_mae"]
            row["skill"] = 1.0 - row["mae"] / naive if naive else None
    monitoring = health_store.summary(tenant)
    learned = {m["prediction"]: m for m in prediction_store.models(tenant)}
    predictions = [
        {
            "prediction": p.name,
            "entity_type": p.entity,
            "model": p.model,
            "horizon": p.model_dump(mode="json")["horizon"],
            "stats": model_summary(learned[p.name]) if p.name in learned else None,
        }
        for p in spec.predictions
    ]
    return {
        "configured": configured,
        "health": health,
        "monitoring": monitoring,
        "predictions": predictions,
    }
