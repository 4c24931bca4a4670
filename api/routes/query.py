"""``/v1/metrics/{name}/top`` and ``/v1/metrics/{name}/query``: rollups, breakdowns, comparisons.

Both answer from :func:`api.query.rollup_grid` (Redis for the recent span,
the warehouse for the rest) and are cached per normalised query
(:mod:`api.cache`). Every read is for the caller's tenant only.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request, Response

from riffle.api.bodies import ErrorResponse
from riffle.api.deps import Services, ServicesDep, Spec, Tenant
from riffle.api.errors import ApiError
from riffle.api.params import DIMENSION_FILTERS
from riffle.api.query import STEPS, rollup_grid
from riffle.api.ratios import as_metric, parts, ratio_grid_points
from riffle.api.rollup import Bucket, Grid, finish
from riffle.api.routes.metrics import _known_dimension, _metric, requested_range
from riffle.api.times import format_instant
from riffle.config.spec import MetricSpec, PipelineSpec, RatioSpec
from riffle.operators.calendar import Calendar
from riffle.operators.records import Dims
from riffle.operators.sketches import sketch_for

MAX_BY = 3
"""Most dimensions one breakdown groups by."""
MAX_BUCKETS = 10_000
"""Most buckets per group in one answer."""
MAX_GROUPS = 1_000
"""Most groups (series of a breakdown) in one answer."""
MAX_LIMIT = 100
"""Largest ``limit`` of ``/top``."""
CACHE_HEADER = "X-Riffle-Cache"
_RESERVED = frozenset({"start", "end", "by", "step", "compare", "limit"})
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorResponse, "description": "A parameter is malformed, unknown or too big."},
    404: {"model": ErrorResponse, "description": "No metric of that name."},
    503: {"model": ErrorResponse, "description": "Redis or the warehouse is unavailable."},
}

router = APIRouter(prefix="/v1/metrics", tags=["query"])


@router.get(
    "/{name}/top",
    operation_id="getMetricTop",
    summary="Top values of one dimension over a range",
    responses=_ERRORS,
    openapi_extra=DIMENSION_FILTERS,
)
def get_top(
    name: str,
    request: Request,
    app: ServicesDep,
    spec: Spec,
    tenant: Tenant,
    by: str = Query(description="The dimension to rank the values of."),
    start: str | None = Query(None, description="Same forms as in /series; default end - 1h."),
    end: str | None = Query(None, description="Default now."),
    limit: int = Query(10, description=f"How many values, 1 to {MAX_LIMIT}."),
    compare: str | None = Query(None, description="`previous_period`: add values and deltas."),
) -> Response:
    """The ``limit`` values of ``by`` with the highest metric value in ``[start, end)``.

    Other parameters named after dimensions filter. With
    ``compare=previous_period`` each item also has the value of the period
    of the same length just before, and the delta.
    """
    ratio = spec.ratio(name)
    metric = _metric(spec, name) if ratio is None else as_metric(spec, ratio)
    body, cache = top_answer(
        app,
        tenant,
        name,
        by=_by(metric, by),
        start=start,
        end=end,
        limit=limit,
        filters=_filters(metric, request),
        compare=compare,
    )
    return Response(body, media_type="application/json", headers=_cache_header(cache))


def top_answer(
    app: Services,
    tenant: str,
    name: str,
    *,
    by: list[str],
    start: str | None,
    end: str | None,
    limit: int,
    filters: dict[str, list[str]],
    compare: str | None = None,
) -> tuple[bytes, str | None]:
    """The ``/top`` answer as JSON bytes and its cache outcome; see :func:`query_answer`."""
    spec = app.spec
    ratio = spec.ratio(name)
    metric = _metric(spec, name) if ratio is None else as_metric(spec, ratio)
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, "invalid_limit", f"limit must be 1 to {MAX_LIMIT} (got {limit})")
    if len(by) != 1:
        raise ApiError(400, "invalid_by", "top ranks exactly one dimension: by=<dimension>")
    for dim in [*by, *filters]:
        _known_dimension(metric, dim)
    start_ms, end_ms = _range(app, metric, start, end, metric.window_ms)
    normalised = _normalised("top", start_ms, end_ms, None, by, filters, compare, limit)
    return _answer(
        app, tenant, metric, normalised, lambda: _top(app, tenant, metric, normalised, spec, ratio)
    )


@router.get(
    "/{name}/query",
    operation_id="queryMetric",
    summary="A metric rolled up to a resolution, broken down by up to three dimensions",
    responses=_ERRORS,
    openapi_extra=DIMENSION_FILTERS,
)
def get_query(
    name: str,
    request: Request,
    app: ServicesDep,
    spec: Spec,
    tenant: Tenant,
    start: str | None = Query(None, description="Same forms as in /series; default end - 1h."),
    end: str | None = Query(None, description="Default now."),
    step: str | None = Query(
        None, description="`1m`, `1h` or `1d`; default the finest that fits 10,000 buckets."
    ),
    by: str | None = Query(None, description=f"Up to {MAX_BY} comma-separated dimensions."),
    compare: str | None = Query(None, description="`previous_period`: add values and deltas."),
) -> Response:
    """Buckets of ``step`` over ``[start, end)``, one series per combination of ``by`` values.

    Counts, sums, minima and maxima merge exactly across windows, series and
    the Redis/warehouse boundary; the value is recomputed from them. Other
    parameters named after dimensions filter. Hours and days follow the
    tenant's time zone (the spec's ``tenants``/``time_zone``), DST included.
    """
    ratio = spec.ratio(name)
    metric = _metric(spec, name) if ratio is None else as_metric(spec, ratio)
    step_ms = _step(metric, step, start, end)
    body, cache = query_answer(
        app,
        tenant,
        name,
        start=start,
        end=end,
        step_ms=step_ms,
        by=_by(metric, by),
        filters=_filters(metric, request),
        compare=compare,
        zone=spec.zone_of(tenant),
    )
    return Response(body, media_type="application/json", headers=_cache_header(cache))


def query_answer(
    app: Services,
    tenant: str,
    name: str,
    *,
    start: str | None,
    end: str | None,
    step_ms: int,
    by: list[str],
    filters: dict[str, list[str]],
    compare: str | None = None,
    zone: str = "UTC",
) -> tuple[bytes, str | None]:
    """The ``/query`` answer as JSON bytes and its cache outcome (``hit``, ``miss`` or ``None``).

    The one entry to the query engine for every surface (this route, GraphQL,
    Grafana): the same checks (``ApiError`` 400/404), the same cache, the same
    hot/cold rollup. ``step_ms`` must be a multiple of the metric's window
    (400 otherwise); ``by`` and ``filters`` must name the metric's dimensions.
    """
    spec = app.spec
    ratio = spec.ratio(name)
    metric = _metric(spec, name) if ratio is None else as_metric(spec, ratio)
    if step_ms <= 0 or step_ms % metric.window_ms:
        raise ApiError(
            400,
            "invalid_step",
            f"a step of {step_ms} ms is not a multiple of the metric's "
            f"{metric.window_ms // 1000} s window",
        )
    for dim in [*by, *filters]:
        _known_dimension(metric, dim)
    start_ms, end_ms = _range(app, metric, start, end, step_ms, zone)
    if (end_ms - start_ms) // step_ms > MAX_BUCKETS:
        raise ApiError(
            400,
            "range_too_large",
            f"{(end_ms - start_ms) // step_ms} buckets of {step_ms // 1000} s; at most "
            f"{MAX_BUCKETS}: shorten the range or use a coarser step",
        )
    normalised = _normalised("query", start_ms, end_ms, step_ms, by, filters, compare, None, zone)
    return _answer(
        app,
        tenant,
        metric,
        normalised,
        lambda: _series(app, tenant, metric, normalised, spec, ratio),
    )


def _by(metric: MetricSpec, raw: str | None) -> list[str]:
    names = list(dict.fromkeys(p.strip() for p in (raw or "").split(",") if p.strip()))
    if len(names) > MAX_BY:
        raise ApiError(
            400, "too_many_dimensions", f"by takes at most {MAX_BY} dimensions (got {len(names)})"
        )
    for dim in names:
        _known_dimension(metric, dim)
    return names


def _filters(metric: MetricSpec, request: Request) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        if key not in _RESERVED:
            _known_dimension(metric, key)
            found.setdefault(key, []).append(value)
    return {k: sorted(set(v)) for k, v in sorted(found.items())}


def _step(metric: MetricSpec, raw: str | None, start: str | None, end: str | None) -> int:
    if raw is None:
        start_ms, end_ms = requested_range(start, end, int(time.time() * 1000))
        for size in STEPS.values():
            if size >= metric.window_ms and (end_ms - start_ms) // size <= MAX_BUCKETS:
                return size
        return STEPS["1d"]
    if raw not in STEPS:
        raise ApiError(400, "invalid_step", f"step must be one of {', '.join(STEPS)} (got {raw!r})")
    size = STEPS[raw]
    if size % metric.window_ms:
        raise ApiError(
            400,
            "invalid_step",
            f"step {raw} is finer than (or not a multiple of) the metric's "
            f"{metric.window_ms // 1000} s window",
        )
    return size


def _range(
    app: ServicesDep,
    metric: MetricSpec,
    start: str | None,
    end: str | None,
    align_ms: int,
    zone: str = "UTC",
) -> tuple[int, int]:
    """``(start aligned down to align_ms, end aligned up to a window)``, validated.

    In another ``zone`` than UTC, start aligns to the local bucket holding it,
    and the buckets must not cut the metric's tumbling windows.
    """
    start_ms, end_ms = requested_range(start, end, int(time.time() * 1000))
    longest = int(app.spec.retention.warehouse.total_seconds() * 1000)
    if end_ms - start_ms > longest:
        raise ApiError(
            400,
            "range_too_large",
            f"the range is longer than the warehouse retention ({longest // 86_400_000} d)",
        )
    # Windows start on multiples of their size, so rounding end up to one
    # selects the same windows; it makes "now"-relative queries share a key.
    window = metric.window_ms
    end_ms = -(-end_ms // window) * window
    if zone == "UTC":
        return start_ms - start_ms % align_ms, end_ms
    calendar = Calendar.of(zone, start_ms, end_ms)
    if all(offset % align_ms == 0 for _, offset in calendar.segments):
        # Local buckets are UTC buckets (minutes anywhere, hours in whole-hour zones).
        return start_ms - start_ms % align_ms, end_ms
    bounds = calendar.boundaries(start_ms, end_ms, align_ms)
    cut = next((b for b in bounds if metric.window.kind == "tumbling" and b % window), None)
    if cut is not None:
        raise ApiError(
            400,
            "invalid_step",
            f"local buckets of {align_ms // 1000} s in {zone} start at "
            f"{format_instant(cut)}, inside the metric's {window // 1000} s windows: "
            "use a finer step",
        )
    return bounds[0], end_ms


def _normalised(
    kind: str,
    start_ms: int,
    end_ms: int,
    step_ms: int | None,
    by: list[str],
    filters: dict[str, list[str]],
    compare: str | None,
    limit: int | None,
    zone: str = "UTC",
) -> dict[str, Any]:
    if compare not in (None, "previous_period"):
        raise ApiError(400, "invalid_compare", f"compare takes previous_period (got {compare!r})")
    return {
        "kind": kind,
        "start": start_ms,
        "end": end_ms,
        "step": step_ms,
        "by": by,
        "filters": filters,
        "compare": compare,
        "limit": limit,
        "zone": zone,
    }


def covers_live(
    metric: MetricSpec, end_ms: int, newest_end_ms: int | None, lateness_ms: int, body: Any
) -> bool:
    """Whether a result reaches windows that may still change, so any write must invalidate it.

    True when the result holds a partial bucket, when the range ends after
    ``newest end - (window + lateness)`` (the newest window, and the ones
    still inside their lateness, are open), for session metrics (a session
    stays open as long as it is active), and before the metric was written.
    """
    if newest_end_ms is None or metric.window.kind == "session" or _has_partial(body):
        return True
    return end_ms > newest_end_ms - metric.window_ms - lateness_ms


def _has_partial(body: Any) -> bool:
    if isinstance(body, dict):
        return body.get("partial") is True or any(_has_partial(v) for v in body.values())
    if isinstance(body, list):
        return any(_has_partial(v) for v in body)
    return False


def _cache_header(outcome: str | None) -> dict[str, str]:
    return {} if outcome is None else {CACHE_HEADER: outcome}


def _answer(
    app: Services,
    tenant: str,
    metric: MetricSpec,
    query: dict[str, Any],
    compute: Any,
) -> tuple[bytes, str | None]:
    if app.spec.ratio(metric.name) is not None:
        # A ratio's answer changes with either part: cache versions follow one metric each.
        return orjson.dumps(compute()), None
    body, version = app.query_cache.get(tenant, metric.name, query)
    if body is not None:
        return body, "hit"
    result = compute()
    fresh: bytes = orjson.dumps(result)
    lateness = metric.lateness
    lateness_ms = int(
        (app.settings.lateness_seconds if lateness is None else lateness.total_seconds()) * 1000
    )
    live = covers_live(metric, query["end"], version.newest_end_ms, lateness_ms, result)
    app.query_cache.put(tenant, metric.name, query, version, fresh, live=live)
    return fresh, "miss"


def _points(
    app: ServicesDep,
    tenant: str,
    metric: MetricSpec,
    q: dict[str, Any],
    start_ms: int,
    end_ms: int,
    spec: PipelineSpec,
    ratio: RatioSpec | None,
) -> dict[Dims, dict[int, dict[str, Any]]]:
    """Answer points per group and bucket; a ratio divides its parts' merged buckets."""
    if ratio is not None:
        numerator, denominator = parts(spec, ratio)
        return ratio_grid_points(
            _grid(app, tenant, numerator, q, start_ms, end_ms),
            _grid(app, tenant, denominator, q, start_ms, end_ms),
        )
    grid = _grid(app, tenant, metric, q, start_ms, end_ms)
    return {
        dims: {start: _point(start, bucket, metric) for start, bucket in buckets.items()}
        for dims, buckets in grid.items()
    }


def _grid(
    app: ServicesDep,
    tenant: str,
    metric: MetricSpec,
    q: dict[str, Any],
    start_ms: int,
    end_ms: int,
) -> Grid:
    grid = rollup_grid(
        app.hot,
        app.warehouse,
        tenant=tenant,
        metric=metric.name,
        start_ms=start_ms,
        end_ms=end_ms,
        step_ms=q["step"],
        by=q["by"],
        filters=q["filters"] or None,
        hot_boundary_ms=int(time.time() * 1000) - round(app.settings.hot_horizon_seconds * 1000),
        sketch=sketch_for(metric),
        zone=q["zone"],
    )
    if len(grid) > MAX_GROUPS:
        raise ApiError(
            400,
            "too_many_groups",
            f"the breakdown has {len(grid)} groups; at most {MAX_GROUPS}: filter or group by "
            "fewer dimensions",
        )
    return grid


def _point(start: int, bucket: Bucket, metric: MetricSpec) -> dict[str, Any]:
    return {
        "start": format_instant(start),
        "value": finish(bucket, metric.aggregation),
        "count": bucket.count,
        "sum": bucket.sum,
        "min": bucket.min,
        "max": bucket.max,
        "windows": bucket.windows,
        "partial": bucket.partial,
        # Sketched metrics: quantiles, top items or distinct-count bounds.
        **({} if bucket.sketch is None else {"detail": bucket.sketch.detail()}),
    }


def _delta(now: float | None, before: float | None) -> float | None:
    return None if now is None or before is None else now - before


def _series(
    app: ServicesDep,
    tenant: str,
    metric: MetricSpec,
    q: dict[str, Any],
    spec: PipelineSpec,
    ratio: RatioSpec | None = None,
) -> dict[str, Any]:
    start_ms, end_ms, step_ms = q["start"], q["end"], q["step"]
    grid = _points(app, tenant, metric, q, start_ms, end_ms, spec, ratio)
    span = end_ms - start_ms
    previous = (
        _points(app, tenant, metric, q, start_ms - span, start_ms, spec, ratio)
        if q["compare"]
        else None
    )
    groups = []
    for dims in sorted(grid):
        points = []
        for bucket_start in sorted(grid[dims]):
            point = grid[dims][bucket_start]
            if "start" not in point:  # a ratio's point
                point = {"start": format_instant(bucket_start), **point}
            if previous is not None:
                before = previous.get(dims, {}).get(bucket_start - span)
                prior = None if before is None else before["value"]
                point["previous"] = prior
                point["delta"] = _delta(point["value"], prior)
            points.append(point)
        groups.append({"dims": dict(dims), "points": points})
    return {
        "metric": metric.name,
        "aggregation": "ratio" if ratio is not None else metric.aggregation,
        "step_seconds": step_ms // 1000,
        "time_zone": q["zone"],
        "start": format_instant(start_ms),
        "end": format_instant(end_ms),
        "by": q["by"],
        "compare": q["compare"],
        "groups": groups,
    }


def _top(
    app: ServicesDep,
    tenant: str,
    metric: MetricSpec,
    q: dict[str, Any],
    spec: PipelineSpec,
    ratio: RatioSpec | None = None,
) -> dict[str, Any]:
    start_ms, end_ms = q["start"], q["end"]
    (dim,) = q["by"]
    grid = _points(app, tenant, metric, q, start_ms, end_ms, spec, ratio)
    span = end_ms - start_ms
    previous = (
        _points(app, tenant, metric, q, start_ms - span, start_ms, spec, ratio)
        if q["compare"]
        else None
    )
    items = []
    for dims, buckets in grid.items():
        (bucket,) = buckets.values()
        # One bucket spans the whole range: no start of its own.
        item: dict[str, Any] = {k: v for k, v in bucket.items() if k != "start"}
        item = {dim: dict(dims)[dim], **item}
        if previous is not None:
            before = next(iter(previous.get(dims, {}).values()), None)
            prior = None if before is None else before["value"]
            item["previous"] = prior
            item["delta"] = _delta(item["value"], prior)
        items.append(item)
    items.sort(key=lambda i: (i["value"] is None, -(i["value"] or 0.0), i[dim]))
    return {
        "metric": metric.name,
        "aggregation": "ratio" if ratio is not None else metric.aggregation,
        "by": dim,
        "start": format_instant(start_ms),
        "end": format_instant(end_ms),
        "compare": q["compare"],
        "limit": q["limit"],
        "items": items[: q["limit"]],
    }
