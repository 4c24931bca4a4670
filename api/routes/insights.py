"""``/v1/insights``: plain-language statements about the tenant's recent windows.

Computed on read from stored final windows (Redis for the recent part, the
warehouse for the rest, as the series API reads them) and from the stored
anomaly scores; see :mod:`operators.models.insights` for the statistics and
``docs/models.md`` for why on read rather than in the stream.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated, Any

import orjson
import redis
from fastapi import APIRouter, Query

from riffle.api.bodies import UNKNOWN_METRIC
from riffle.api.deps import HotModelResults, ModelResults, ServicesDep, Spec, Tenant
from riffle.api.errors import ApiError
from riffle.api.series import Series, group_series, read_windows
from riffle.api.times import parse_instant
from riffle.config.durations import format_duration, parse_duration
from riffle.config.spec import MetricSpec
from riffle.operators.models import insights as found
from riffle.operators.sketches import sketch_for
from riffle.sinks.redis.model_results import RedisModelStore
from riffle.sinks.warehouse.model_results import ModelStore

router = APIRouter(tags=["models"])

KINDS = ("unusual", "change_point", "trend", "top_mover")
PERIOD_HELP = "The recent period (1m to 30d); movers compare it with the one before."
KIND_HELP = "Only these kinds (repeatable): " + ", ".join(KINDS)


def _points(series: Series) -> list[found.Point]:
    return [
        (w.window_start, float(w.value)) for w in series[1] if w.is_final and w.value is not None
    ]


def _metric_insights(
    metric: MetricSpec,
    series: list[Series],
    start_ms: int,
    mid_ms: int,
    period: str,
    kinds: set[str],
) -> list[found.Insight]:
    out: list[found.Insight] = []
    if not series:
        return out
    totals = group_series(series, [], metric.aggregation, sketch_for(metric))
    recent = [p for p in _points(totals[0]) if p[0] >= mid_ms] if totals else []
    if "trend" in kinds:
        t = found.trend(metric.name, recent, metric.window_ms)
        if t is not None:
            out.append(t)
    if "change_point" in kinds:
        out.extend(found.change_points(metric.name, recent))
    if "top_mover" in kinds and metric.dimensions:
        current = {d: [v for ts, v in _points((d, w)) if ts >= mid_ms] for d, w in series}
        previous = {
            d: [v for ts, v in _points((d, w)) if start_ms <= ts < mid_ms] for d, w in series
        }
        out.extend(
            found.top_movers(metric.name, metric.aggregation, current, previous, period=period)
        )
    return out


@router.get(
    "/v1/insights",
    operation_id="listInsights",
    summary="Insights about recent windows",
    responses=UNKNOWN_METRIC,
)
def list_insights(
    app: ServicesDep,
    spec: Spec,
    warm: ModelResults,
    hot: HotModelResults,
    tenant: Tenant,
    period: str = Query("1h", description=PERIOD_HELP),
    end: str | None = Query(None, description="End of the period (forms of the series API)."),
    metric: Annotated[list[str] | None, Query(description="Only these metrics.")] = None,
    kind: Annotated[list[str] | None, Query(description=KIND_HELP)] = None,
    limit: int = Query(50, ge=1, le=1000),
) -> dict[str, Any]:
    """The feed, strongest first within each kind; every statement carries its numbers.

    400 ``bad_period``/``bad_time``/``bad_kind``; 404 ``unknown_metric``.
    """
    now = int(time.time() * 1000)
    try:
        span = parse_duration(period)
    except ValueError as exc:
        raise ApiError(400, "bad_period", str(exc)) from exc
    period_ms = int(span.total_seconds() * 1000)
    if not 60_000 <= period_ms <= 30 * 86_400_000:
        raise ApiError(400, "bad_period", "period lies between 1m and 30d")
    try:
        end_ms = parse_instant(end, now) if end else now
    except ValueError as exc:
        raise ApiError(400, "bad_time", str(exc)) from exc
    kinds = set(kind or KINDS)
    if kinds - set(KINDS):
        raise ApiError(
            400,
            "bad_kind",
            f"unknown kind(s) {sorted(kinds - set(KINDS))}; known: {', '.join(KINDS)}",
        )
    chosen = spec.metrics
    if metric:
        unknown = [m for m in metric if spec.metric(m) is None]
        if unknown:
            raise ApiError(404, "unknown_metric", f"no metric named {unknown[0]!r}")
        chosen = [m for m in spec.metrics if m.name in metric]
    start_ms, mid_ms = end_ms - 2 * period_ms, end_ms - period_ms
    label = format_duration(span)
    feed: list[found.Insight] = []
    for m in chosen:
        if m.window.kind == "session" or m.aggregation == "top_k":
            continue  # irregular windows; a top-k's value is not a level
        if not kinds & {"trend", "change_point", "top_mover"}:
            break
        series = read_windows(
            app.hot,
            app.warehouse,
            tenant=tenant,
            metric=m.name,
            start_ms=start_ms,
            end_ms=end_ms,
            filters=None,
            hot_boundary_ms=now - round(app.settings.hot_horizon_seconds * 1000),
        )
        feed.extend(_metric_insights(m, series, start_ms, mid_ms, label, kinds))
    if "unusual" in kinds:
        feed.extend(found.unusual(_anomalies(warm, hot, tenant, mid_ms, end_ms, chosen)))
    return {
        "period": {"start": mid_ms, "end": end_ms, "previous_start": start_ms, "length": label},
        "insights": [asdict(i) for i in found.ranked(feed, limit)],
    }


def _anomalies(
    warm: ModelStore,
    hot: RedisModelStore,
    tenant: str,
    start_ms: int,
    end_ms: int,
    chosen: list[MetricSpec],
) -> list[dict[str, Any]]:
    """Anomaly rows of the chosen metrics: Redis first, the warehouse when it is empty."""
    names = [m.name for m in chosen if m.anomaly is not None]
    if not names:
        return []
    rows: list[dict[str, Any]] = []
    try:
        rows = hot.anomalies(tenant, names, start_ms, end_ms, min_score=0.0, limit=10_000)
    except redis.RedisError:
        rows = []
    if not rows:
        rows = warm.anomalies(tenant, start_ms, end_ms, limit=10_000)
    for row in rows:
        if isinstance(row["dims"], str):
            row["dims"] = orjson.loads(row["dims"])
    return [r for r in rows if r["metric"] in names]
