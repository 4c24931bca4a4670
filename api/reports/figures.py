"""A report's figures: each metric over the period and the one before, its top movers, and
the anomalies and alert transitions of the period — read with the query engine.

Totals are one bucket over the whole period (:func:`api.query.rollup_grid` with
no step), so they merge exactly like ``/top`` and ``/query`` do: counts and
sums add, minima and maxima compare, sketches merge, ratios divide summed
parts. The series a chart draws is hourly for periods of up to two days and
daily beyond, on the tenant's clock. Top movers are the values of one
dimension whose metric value changed most against the previous period.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import redis

from riffle.api.query import rollup_grid
from riffle.api.ratios import parts, ratio_grid_points
from riffle.api.rollup import finish
from riffle.config.spec import PipelineSpec
from riffle.operators.records import Dims
from riffle.operators.sketches import sketch_for
from riffle.sinks.redis.model_results import RedisModelStore
from riffle.sinks.redis.windows import RedisWindowStore
from riffle.sinks.warehouse.alert_history import WarehouseAlerts
from riffle.sinks.warehouse.base import Warehouse
from riffle.sinks.warehouse.model_results import ModelStore

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
MAX_LISTED = 50
"""Most anomalies and alert transitions a report lists (the count says how many there were)."""


@dataclass
class MetricFigures:
    """One metric of a report."""

    name: str
    unit: str
    aggregation: str
    value: float | None
    previous: float | None
    change: float | None
    change_pct: float | None
    partial: bool
    series: list[tuple[int, float | None]] = field(default_factory=list)
    """``(bucket start ms, value)`` over the period."""
    movers_by: str | None = None
    movers: list[dict[str, Any]] = field(default_factory=list)
    """``{"value": dimension value, "now", "before", "change"}``, biggest change first."""


@dataclass
class Figures:
    """Everything a report shows about one period."""

    tenant: str
    zone: str
    start: int
    end: int
    previous_start: int
    previous_end: int
    metrics: list[MetricFigures]
    anomalies: list[dict[str, Any]]
    anomaly_count: int
    alerts: list[dict[str, Any]]
    alert_count: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Sources:
    """Where figures are read from: the hot store, the warehouse, the spec."""

    hot: RedisWindowStore
    warehouse: Warehouse
    spec: PipelineSpec
    hot_horizon_s: float
    hot_ttl_s: int


def period_figures(
    src: Sources,
    tenant: str,
    metrics: list[str],
    span: tuple[int, int],
    previous: tuple[int, int],
    *,
    top_by: str | None = None,
    top: int = 5,
) -> Figures:
    """The figures of ``metrics`` for ``tenant`` over ``span`` against ``previous``."""
    zone = src.spec.zone_of(tenant)
    start, end = span
    step = HOUR_MS if end - start <= 2 * DAY_MS else DAY_MS
    found = [
        _metric(src, tenant, name, span, previous, step, zone, top_by, top) for name in metrics
    ]
    anomalies = _anomalies(src, tenant, metrics, start, end)
    alerts = WarehouseAlerts(src.warehouse).history(tenant, start, end, limit=1000)
    alerts = [a for a in alerts if a.get("metric") in metrics]
    return Figures(
        tenant=tenant,
        zone=zone,
        start=start,
        end=end,
        previous_start=previous[0],
        previous_end=previous[1],
        metrics=found,
        anomalies=anomalies[:MAX_LISTED],
        anomaly_count=len(anomalies),
        alerts=[_alert(a) for a in alerts[:MAX_LISTED]],
        alert_count=len(alerts),
    )


def _values(
    src: Sources,
    tenant: str,
    name: str,
    span: tuple[int, int],
    step: int | None,
    by: list[str],
    zone: str,
) -> tuple[dict[Dims, dict[int, float | None]], bool]:
    """Per group and bucket, the metric's value; and whether any bucket is partial."""
    ratio = src.spec.ratio(name)
    boundary = int(time.time() * 1000) - round(src.hot_horizon_s * 1000)

    def grid(metric_name: str) -> Any:
        metric = src.spec.metric(metric_name)
        assert metric is not None  # checked when the spec loaded
        return rollup_grid(
            src.hot, src.warehouse, tenant=tenant, metric=metric_name, start_ms=span[0],
            end_ms=span[1], step_ms=step, by=by, filters=None, hot_boundary_ms=boundary,
            sketch=sketch_for(metric), zone=zone,
        )  # fmt: skip

    if ratio is not None:
        numerator, denominator = parts(src.spec, ratio)
        points = ratio_grid_points(grid(numerator.name), grid(denominator.name))
        values = {d: {s: p["value"] for s, p in b.items()} for d, b in points.items()}
        return values, any(p["partial"] for b in points.values() for p in b.values())
    metric = src.spec.metric(name)
    assert metric is not None
    cells = grid(name)
    values = {d: {s: finish(x, metric.aggregation) for s, x in b.items()} for d, b in cells.items()}
    return values, any(x.partial for b in cells.values() for x in b.values())


def _total(values: dict[Dims, dict[int, float | None]]) -> float | None:
    """The one bucket of the one group of an ungrouped, stepless rollup."""
    for buckets in values.values():
        for value in buckets.values():
            return value
    return None


def _change(now: float | None, before: float | None) -> tuple[float | None, float | None]:
    if now is None or before is None:
        return None, None
    return now - before, (None if before == 0 else (now - before) / abs(before) * 100)


def _metric(
    src: Sources,
    tenant: str,
    name: str,
    span: tuple[int, int],
    previous: tuple[int, int],
    step: int,
    zone: str,
    top_by: str | None,
    top: int,
) -> MetricFigures:
    metric = src.spec.metric(name)
    ratio = src.spec.ratio(name)
    dims = metric.dimensions if metric is not None else ratio.dimensions if ratio else []
    window = metric.window_ms if metric is not None else parts(src.spec, ratio)[0].window_ms  # type: ignore[arg-type]
    now_values, partial = _values(src, tenant, name, span, None, [], zone)
    before_values, _ = _values(src, tenant, name, previous, None, [], zone)
    value, before = _total(now_values), _total(before_values)
    change, pct = _change(value, before)
    series: list[tuple[int, float | None]] = []
    if step % window == 0:
        by_bucket, _ = _values(src, tenant, name, span, step, [], zone)
        buckets = next(iter(by_bucket.values()), {})
        series = sorted(buckets.items())
    figures = MetricFigures(
        name=name,
        unit=(metric.unit if metric is not None else ratio.unit if ratio else ""),
        aggregation="ratio" if ratio is not None else metric.aggregation if metric else "",
        value=value,
        previous=before,
        change=change,
        change_pct=pct,
        partial=partial,
        series=series,
    )
    dim = top_by if top_by in dims else (dims[0] if dims and top_by is None else None)
    if dim is not None:
        now_by, _ = _values(src, tenant, name, span, None, [dim], zone)
        before_by, _ = _values(src, tenant, name, previous, None, [dim], zone)
        moved: list[tuple[float, str, float | None, float | None]] = []
        for group in now_by.keys() | before_by.keys():
            a, b = _total({group: now_by.get(group, {})}), _total({group: before_by.get(group, {})})
            moved.append(((a or 0.0) - (b or 0.0), str(dict(group)[dim]), a, b))
        moved.sort(key=lambda m: (-abs(m[0]), m[1]))
        movers = [{"value": v, "now": a, "before": b, "change": d} for d, v, a, b in moved]
        figures.movers_by, figures.movers = dim, movers[:top]
    return figures


def _anomalies(
    src: Sources, tenant: str, metrics: list[str], start: int, end: int
) -> list[dict[str, Any]]:
    """Windows the anomaly models labelled ``anomaly`` in the period, the hot copy first."""
    watched = [m for m in metrics if (s := src.spec.metric(m)) is not None and s.anomaly]
    if not watched:
        return []
    rows: list[dict[str, Any]] = []
    hot = RedisModelStore(src.hot.client, src.hot.prefix, src.hot_ttl_s)
    try:
        rows = hot.anomalies(tenant, watched, start, end, limit=10_000)
    except redis.RedisError:
        rows = []
    if not rows:
        rows = [r for r in ModelStore(src.warehouse).anomalies(tenant, start, end, limit=10_000)
                if r["metric"] in watched]  # fmt: skip
    out = []
    for row in rows:
        if row.get("label") != "anomaly":
            continue
        dims = row["dims"]
        out.append(
            {
                "metric": row["metric"],
                "at": row["window_start"],
                "dims": orjson.loads(dims) if isinstance(dims, str) else dims,
                "value": row.get("value"),
                "expected": row.get("expected"),
                "score": row.get("score"),
            }
        )
    out.sort(key=lambda r: (-(r["score"] or 0.0), r["at"]))
    return out


def _alert(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "rule": row["rule"],
        "metric": row.get("metric"),
        "severity": row.get("severity"),
        "from": row.get("from_state"),
        "to": row.get("to_state"),
        "at": row["at"],
        "value": row.get("value"),
        "labels": row.get("labels", {}),
        "summary": (row.get("annotations") or {}).get("summary", ""),
    }
