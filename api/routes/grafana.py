"""``/grafana``: the HTTP protocol of Grafana's JSON datasource (``simpod-json-datasource``).

Point the datasource's URL at ``http://riffle:8000/grafana`` and add the API
key as a custom header (``X-API-Key``, or ``Authorization: Bearer``); every
endpoint needs the ``read`` scope and answers for the key's tenant only.
Panels go through the same query engine as ``/v1/metrics/{name}/query``
(:func:`api.routes.query.query_answer`: checks, cache, hot/cold rollup);
the mapping of bodies and frames is :mod:`api.grafana_protocol`.
Annotations are alert transitions (the warehouse's history) and anomalies
(Redis, then the warehouse, as ``/v1/anomalies`` reads them).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter

from riffle.api import grafana_protocol as proto
from riffle.api.bodies import ErrorResponse
from riffle.api.deps import (
    AlertHistory,
    HotModelResults,
    ModelResults,
    Services,
    ServicesDep,
    Tenant,
)
from riffle.api.errors import ApiError
from riffle.api.ratios import as_metric, parts
from riffle.api.routes.metrics import _metric
from riffle.api.routes.models import list_anomalies
from riffle.api.routes.query import query_answer
from riffle.api.times import format_instant
from riffle.config.spec import MetricSpec, PipelineSpec
from riffle.sinks.redis.model_results import RedisModelStore
from riffle.sinks.warehouse.alert_history import WarehouseAlerts
from riffle.sinks.warehouse.model_results import ModelStore

MAX_ANNOTATIONS = 1_000
"""Most annotations of each kind in one answer."""
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorResponse, "description": "A body the protocol does not allow."},
    401: {"model": ErrorResponse, "description": "Missing, unknown, revoked or expired key."},
    403: {"model": ErrorResponse, "description": "The key lacks the read scope."},
    404: {"model": ErrorResponse, "description": "No metric of that name."},
}

router = APIRouter(prefix="/grafana", tags=["grafana"], responses=_ERRORS)


def _resolve(spec: PipelineSpec, name: str) -> tuple[MetricSpec, bool]:
    ratio = spec.ratio(name)
    return (_metric(spec, name), False) if ratio is None else (as_metric(spec, ratio), True)


def _stored(spec: PipelineSpec, name: str) -> list[str]:
    """The stored metrics behind ``name`` (a ratio's two parts)."""
    ratio = spec.ratio(name)
    return [name] if ratio is None else [m.name for m in parts(spec, ratio)]


def dimension_values(app: Services, tenant: str, metrics: list[str], dimension: str) -> list[str]:
    """Values of ``dimension`` in the series Redis holds for ``metrics`` (one pipeline)."""
    indexes = app.hot.list_series_many(tenant, metrics)
    found = {dict(dims).get(dimension) for index in indexes.values() for dims in index.values()}
    return sorted(v for v in found if v is not None)


@router.get("", operation_id="grafanaHealth", summary="Test connection")
@router.get("/", include_in_schema=False)
def health(tenant: Tenant) -> dict[str, str]:
    """200 when the key is valid and holds ``read``: what "Save & test" checks."""
    return {"status": "ok", "tenant": tenant}


@router.post("/metrics", operation_id="grafanaMetrics", summary="Metrics and their payloads")
def metrics(app: ServicesDep, body: proto.MetricsBody | None = None) -> list[dict[str, Any]]:
    """Every metric and ratio, each with its payload options (group by, field, format and a
    filter per dimension). The list does not depend on the body's current metric."""
    spec = app.spec
    return [
        *(proto.metric_config(m, False) for m in spec.metrics),
        *(proto.metric_config(as_metric(spec, r), True) for r in spec.ratios),
    ]


@router.post(
    "/metric-payload-options",
    operation_id="grafanaPayloadOptions",
    summary="Options of one payload of a metric",
)
def payload_options(
    body: proto.PayloadOptionsBody, app: ServicesDep, tenant: Tenant
) -> list[dict[str, str]]:
    """Group-by dimensions, fields, formats, or the values a dimension takes."""
    metric, is_ratio = _resolve(app.spec, body.metric)
    if body.name == "group_by":
        return proto.options(list(metric.dimensions))
    if body.name == "field":
        return proto.options(list(proto.RATIO_FIELDS if is_ratio else proto.FIELDS))
    if body.name == "format":
        return proto.options(list(proto.FORMATS))
    if body.name not in metric.dimensions:
        raise ApiError(
            400, "unknown_payload", f"metric {metric.name!r} has no payload {body.name!r}"
        )
    return proto.options(dimension_values(app, tenant, _stored(app.spec, body.metric), body.name))


@router.post("/query", operation_id="grafanaQuery", summary="Panel data and annotations")
def query(
    body: proto.QueryBody,
    app: ServicesDep,
    tenant: Tenant,
    history: AlertHistory,
    warm: ModelResults,
    hot: HotModelResults,
) -> list[dict[str, Any]]:
    """One time series per group (or one table) per target, over the dashboard's range.

    The step is the finest multiple of the metric's window that is at least
    ``intervalMs`` and keeps each series within ``maxDataPoints``; hours and
    days follow the tenant's time zone. Payload keys named after dimensions,
    and ad-hoc filters (``=``), filter the series. A target ``@alerts`` or
    ``@anomalies`` (as plugin versions that send annotation queries through
    ``/query`` do) answers the annotations of ``/annotations`` as a table of
    ``time``, ``timeEnd``, ``title``, ``text`` and ``tags``.
    """
    start_ms, end_ms = proto.instants(body.range)
    out: list[dict[str, Any]] = []
    for target in body.targets:
        if target.hide or not target.target:
            continue
        if target.target.startswith("@"):
            notes = _annotations(
                app, tenant, history, warm, hot, target.target[1:], {}, start_ms, end_ms
            )
            out.append(proto.annotation_table(notes))
            continue
        metric, is_ratio = _resolve(app.spec, target.target)
        payload = proto.payload_of(target)
        step_ms = proto.pick_step(
            metric.window_ms, end_ms - start_ms, body.intervalMs, body.maxDataPoints
        )
        zone = app.spec.zone_of(tenant) if step_ms in (3_600_000, 86_400_000) else "UTC"
        answer, _ = query_answer(
            app,
            tenant,
            target.target,
            start=str(start_ms),
            end=str(end_ms),
            step_ms=step_ms,
            by=proto.group_by_of(metric, payload),
            filters=proto.filters_of(metric, payload, body.adhocFilters),
            zone=zone,
        )
        field = proto.field_of(payload, is_ratio)
        out.extend(proto.frames(orjson.loads(answer), field, proto.format_of(target, payload)))
    return out


@router.post("/variable", operation_id="grafanaVariable", summary="Values of a query variable")
def variable(body: proto.VariableBody, app: ServicesDep, tenant: Tenant) -> list[dict[str, str]]:
    """``metrics``, ``dimensions(<metric>)``, ``values(<dimension>)`` (across every metric
    that has it) or ``values(<metric>, <dimension>)``, as ``[{__text, __value}]``."""
    spec = app.spec
    name, args = proto.variable_query(body.payload)
    if name == "metrics":
        values = [m.name for m in spec.metrics] + [r.name for r in spec.ratios]
    elif name == "dimensions":
        values = list(_resolve(spec, args[0])[0].dimensions)
    else:
        values = _values(app, tenant, *args)
    return [{"__text": v, "__value": v} for v in values]


def _values(app: Services, tenant: str, *args: str) -> list[str]:
    spec = app.spec
    if len(args) == 2:
        metric, _ = _resolve(spec, args[0])
        if args[1] not in metric.dimensions:
            raise ApiError(
                400, "unknown_dimension", f"metric {metric.name!r} has no dimension {args[1]!r}"
            )
        return dimension_values(app, tenant, _stored(spec, args[0]), args[1])
    (dimension,) = args
    if dimension not in spec.dimensions:
        known = ", ".join(spec.dimensions)
        raise ApiError(
            400, "unknown_dimension", f"no dimension {dimension!r} in the spec (known: {known})"
        )
    having = [m.name for m in spec.metrics if dimension in m.dimensions]
    return dimension_values(app, tenant, having, dimension)


@router.post("/tag-keys", operation_id="grafanaTagKeys", summary="Keys for ad-hoc filters")
def tag_keys(app: ServicesDep) -> list[dict[str, str]]:
    """Every dimension of the spec."""
    return [{"type": "string", "text": name} for name in app.spec.dimensions]


@router.post("/tag-values", operation_id="grafanaTagValues", summary="Values for ad-hoc filters")
def tag_values(body: proto.TagValuesBody, app: ServicesDep, tenant: Tenant) -> list[dict[str, str]]:
    """Values of one dimension across every metric that has it (series Redis holds)."""
    return [{"text": v} for v in _values(app, tenant, body.key)]


@router.post("/annotations", operation_id="grafanaAnnotations", summary="Alerts and anomalies")
def list_annotations(
    body: proto.AnnotationsBody,
    app: ServicesDep,
    tenant: Tenant,
    history: AlertHistory,
    warm: ModelResults,
    hot: HotModelResults,
) -> list[dict[str, Any]]:
    """Alert transitions and anomalies in the range, as annotation events.

    The annotation's ``query`` picks: empty (both), ``alerts``,
    ``alerts <rule>``, ``anomalies`` or ``anomalies <metric>``.
    """
    start_ms, end_ms = proto.instants(body.range)
    return _annotations(
        app,
        tenant,
        history,
        warm,
        hot,
        body.annotation.query,
        body.annotation.model_dump(),
        start_ms,
        end_ms,
    )


def _annotations(
    app: Services,
    tenant: str,
    history: WarehouseAlerts,
    warm: ModelStore,
    hot: RedisModelStore,
    query: str,
    echo: dict[str, Any],
    start_ms: int,
    end_ms: int,
) -> list[dict[str, Any]]:
    kind, _, rest = query.strip().partition(" ")
    subject = rest.strip() or None
    if kind not in ("", "alerts", "anomalies"):
        raise ApiError(
            400,
            "invalid_annotation",
            f"annotation query {query!r}: alerts [rule] | anomalies [metric]",
        )
    out: list[dict[str, Any]] = []
    if kind in ("", "alerts"):
        rows = history.history(tenant, start_ms, end_ms, rule=subject, limit=MAX_ANNOTATIONS)
        out.extend(_transition(echo, row) for row in rows)
    if kind in ("", "anomalies"):
        found = list_anomalies(
            spec=app.spec,
            warm=warm,
            hot=hot,
            tenant=tenant,
            start=str(start_ms),
            end=str(end_ms),
            min_score=0.0,
            label="anomaly",
            limit=MAX_ANNOTATIONS,
            source="auto",
        )
        rows = [r for r in found["anomalies"] if subject is None or r["metric"] == subject]
        out.extend(_anomaly(echo, app.spec, row) for row in rows)
    out.sort(key=lambda a: a["time"])
    return out


def _transition(echo: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    labels = _json(row["labels"])
    notes = _json(row["annotations"])
    value = "" if row["value"] is None else f" value {row['value']:g}"
    text = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    summary = notes.get("summary") or notes.get("description") or ""
    return {
        "annotation": echo,
        "time": row["at"],
        "title": f"{row['rule']}: {row['from_state']} → {row['to_state']}",
        "text": f"{row['instance']}{value}"
        + (f" ({text})" if text else "")
        + (f": {summary}" if summary else ""),
        "tags": ["alert", row["rule"], row["to_state"], row["severity"]],
    }


def _anomaly(echo: dict[str, Any], spec: PipelineSpec, row: dict[str, Any]) -> dict[str, Any]:
    metric = spec.metric(row["metric"])
    window = metric.window_ms if metric is not None else 0
    dims = ", ".join(f"{k}={v}" for k, v in sorted(row["dims"].items()))
    expected = row.get("expected")
    return {
        "annotation": echo,
        "time": row["window_start"],
        "timeEnd": row["window_start"] + window,
        "isRegion": window > 0,
        "title": f"anomaly in {row['metric']}" + (f" ({dims})" if dims else ""),
        "text": f"value {row['value']:g}, score {row['score']:.2f}"
        + ("" if expected is None else f", expected {expected:g}")
        + f" at {format_instant(row['window_start'])}",
        "tags": ["anomaly", row["metric"]],
    }


def _json(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    loaded = orjson.loads(raw) if raw else {}
    return loaded if isinstance(loaded, dict) else {}
