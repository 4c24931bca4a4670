"""``/v1/metrics``: metric definitions and their windowed series."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request

from riffle.api.bodies import (
    ErrorResponse,
    MetricList,
    MetricOut,
    PointOut,
    RatioOut,
    SeriesOut,
    SeriesResponse,
)
from riffle.api.deps import ServicesDep, Spec, Tenant
from riffle.api.errors import ApiError
from riffle.api.params import DIMENSION_FILTERS
from riffle.api.ratios import as_metric, parts, ratio_series
from riffle.api.series import Series, group_series, read_windows
from riffle.api.times import format_instant, parse_instant
from riffle.config.spec import MetricSpec, PipelineSpec
from riffle.operators.sketches import sketch_for

MAX_WINDOWS = 10_000
"""Most windows one series may span in a single query."""

DEFAULT_SPAN_MS = 3_600_000
_RESERVED = frozenset({"start", "end", "group_by"})
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorResponse, "description": "A parameter is malformed or unknown."},
    404: {"model": ErrorResponse, "description": "No metric of that name."},
    503: {"model": ErrorResponse, "description": "Redis or the warehouse is unavailable."},
}

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])


@router.get("", operation_id="listMetrics", summary="Every metric of the pipeline spec")
def list_metrics(spec: Spec) -> MetricList:
    """The definitions of all metrics and ratio metrics, in spec order."""
    return MetricList(
        metrics=[MetricOut.of(m) for m in spec.metrics],
        ratios=[RatioOut.of(r) for r in spec.ratios],
    )


@router.get(
    "/{name}", operation_id="getMetric", summary="One metric's definition", responses=_ERRORS
)
def get_metric(name: str, spec: Spec) -> MetricOut:
    """The definition of the metric ``name``."""
    return MetricOut.of(_metric(spec, name))


@router.get(
    "/{name}/series",
    operation_id="getMetricSeries",
    summary="Windows of a metric, per series or grouped",
    responses=_ERRORS,
    openapi_extra=DIMENSION_FILTERS,
)
def get_series(
    name: str,
    request: Request,
    app: ServicesDep,
    spec: Spec,
    tenant: Tenant,
    start: str | None = Query(
        None,
        description="RFC 3339, epoch ms, `now` or relative (`-15m`, `-1h`); default end - 1h.",
    ),
    end: str | None = Query(None, description="Same forms as start; default now."),
    group_by: str | None = Query(
        None,
        description="Comma-separated dimensions to merge series by; empty merges all series.",
    ),
) -> SeriesResponse:
    """Windows starting in ``[start, end)`` (start aligned down to a window start).

    Any other query parameter named after one of the metric's dimensions
    filters series by it (`country=de&country=fr` is de OR fr). Recent windows
    come from Redis, older ones from the warehouse; open windows are partial
    (`is_final` false) and grow until they close.
    """
    ratio = spec.ratio(name)
    metric = _metric(spec, name) if ratio is None else as_metric(spec, ratio)
    now = int(time.time() * 1000)
    start_ms, end_ms = _range(metric, start, end, now)
    groups = _group_by(metric, group_by)
    filters: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        if key not in _RESERVED:
            _known_dimension(metric, key)
            filters.setdefault(key, []).append(value)

    def read(stored: str) -> list[Series]:
        return read_windows(
            app.hot,
            app.warehouse,
            tenant=tenant,
            metric=stored,
            start_ms=start_ms,
            end_ms=end_ms,
            filters=filters or None,
            hot_boundary_ms=now - round(app.settings.hot_horizon_seconds * 1000),
        )

    if ratio is not None:  # the parts' windows merged per group of the ratio's dimensions
        numerator, denominator = parts(spec, ratio)
        by = list(ratio.dimensions) if groups is None else groups
        found = ratio_series(ratio, read(numerator.name), read(denominator.name), by)
    else:
        found = read(metric.name)
        if groups is not None:
            found = group_series(found, groups, metric.aggregation, sketch_for(metric))
    return SeriesResponse(
        metric=metric.name,
        aggregation="ratio" if ratio is not None else metric.aggregation,
        window_seconds=metric.window_ms // 1000,
        start=format_instant(start_ms),
        end=format_instant(end_ms),
        group_by=groups,
        series=[_series_out(series) for series in found],
    )


def _metric(spec: PipelineSpec, name: str) -> MetricSpec:
    metric = spec.metric(name)
    if metric is None:
        known = ", ".join(m.name for m in spec.metrics)
        raise ApiError(404, "metric_not_found", f"no metric {name!r} (known: {known})")
    return metric


def requested_range(start: str | None, end: str | None, now: int) -> tuple[int, int]:
    """``(start, end)`` in epoch ms from query strings (default: the hour before now).

    A bad instant or an empty range is a 400 naming the problem.
    """
    try:
        end_ms = now if end is None else parse_instant(end, now)
        start_ms = end_ms - DEFAULT_SPAN_MS if start is None else parse_instant(start, now)
    except ValueError as exc:
        raise ApiError(400, "invalid_time", str(exc)) from None
    if start_ms >= end_ms:
        raise ApiError(
            400,
            "invalid_range",
            f"start ({format_instant(start_ms)}) must be before end ({format_instant(end_ms)})",
        )
    return start_ms, end_ms


def _range(metric: MetricSpec, start: str | None, end: str | None, now: int) -> tuple[int, int]:
    """Validated ``(aligned start, end)`` in epoch ms."""
    start_ms, end_ms = requested_range(start, end, now)
    size = metric.window_ms
    aligned = start_ms - start_ms % size
    windows = -(-(end_ms - aligned) // size)
    if windows > MAX_WINDOWS:
        raise ApiError(
            400,
            "range_too_large",
            f"the range spans {windows} windows of {size // 1000} s; at most {MAX_WINDOWS} "
            "per query: shorten it",
        )
    return aligned, end_ms


def _group_by(metric: MetricSpec, raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    names = list(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    for name in names:
        _known_dimension(metric, name)
    return names


def _known_dimension(metric: MetricSpec, name: str) -> None:
    if name not in metric.dimensions:
        known = ", ".join(metric.dimensions) or "none"
        raise ApiError(
            400,
            "unknown_dimension",
            f"metric {metric.name!r} has no dimension {name!r} (dimensions: {known})",
        )


def _series_out(series: Series) -> SeriesOut:
    dims, windows = series
    return SeriesOut(
        dims=dict(dims),
        points=[
            PointOut(
                window_start=format_instant(w.window_start),
                window_end=format_instant(w.window_end),
                value=w.value,
                count=w.count,
                is_final=w.is_final,
                revision=w.revision,
                detail=w.detail,
            )
            for w in windows
        ],
    )
