"""The Grafana JSON datasource protocol (``simpod-json-datasource``): bodies and pure mapping.

Request bodies are the plugin's (its README and ``openapi.yaml``); Grafana
sends more fields than are read here, and they are ignored. This module
turns them into query-engine arguments (step, group-by, dimension filters)
and engine answers into the plugin's time-series and table frames. No I/O:
the routes in :mod:`api.routes.grafana` do the reading.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from riffle.api.errors import ApiError
from riffle.api.times import TIME_PATTERN, parse_instant
from riffle.config.spec import MetricSpec

LADDER_MS = (
    1_000, 5_000, 10_000, 15_000, 30_000, 60_000, 300_000, 600_000, 900_000, 1_800_000,
    3_600_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000,
)  # fmt: skip
"""Steps a panel can get, finest first; only multiples of the metric's window are used."""
DEFAULT_MAX_POINTS = 1_000
"""Points per series when Grafana sends no ``maxDataPoints``."""
FIELDS = ("value", "count", "sum", "min", "max")
"""What a metric's datapoints can carry (``field`` payload)."""
RATIO_FIELDS = ("value", "numerator", "denominator")
"""What a ratio's datapoints can carry."""
FORMATS = ("time_series", "table")
RESERVED_PAYLOADS = ("group_by", "field", "format")
_ALL = frozenset({"", "*", "$__all", "All", "all"})


class _Body(BaseModel):
    """Grafana sends more than we read: unknown fields are ignored, not refused."""

    model_config = ConfigDict(extra="ignore")


class GrafanaRange(_Body):
    """``range``: absolute instants (RFC 3339) of the dashboard's time picker."""

    from_: str = Field(
        alias="from", json_schema_extra={"pattern": TIME_PATTERN, "examples": ["-1h"]}
    )
    to: str = Field(json_schema_extra={"pattern": TIME_PATTERN, "examples": ["now"]})


class Target(_Body):
    """One query of a panel: ``target`` is a metric (or ratio) name."""

    target: str | None = None
    refId: str = "A"  # noqa: N815 - the plugin's field name
    payload: dict[str, Any] | str | None = None
    type: str | None = None
    hide: bool = False


class AdhocFilter(_Body):
    """A dashboard ad-hoc filter: ``key operator value``."""

    key: str
    operator: str = "="
    value: str


class QueryBody(_Body):
    """``POST /query``."""

    range: GrafanaRange
    intervalMs: int | None = None  # noqa: N815
    maxDataPoints: int | None = None  # noqa: N815
    targets: list[Target] = Field(default_factory=list)
    adhocFilters: list[AdhocFilter] = Field(default_factory=list)  # noqa: N815


class MetricsBody(_Body):
    """``POST /metrics``: the metric being edited and its payload (both optional)."""

    metric: str | None = None
    payload: dict[str, Any] | None = None


class PayloadOptionsBody(_Body):
    """``POST /metric-payload-options``: the options of payload ``name`` of ``metric``."""

    metric: str
    payload: dict[str, Any] = Field(default_factory=dict)
    name: str = Field(description="group_by, field, format, or one of the metric's dimensions.")


class VariableBody(_Body):
    """``POST /variable``: ``payload`` is what the variable editor holds."""

    payload: dict[str, Any] | str = Field(
        default_factory=dict,
        json_schema_extra={"examples": ["metrics", {"target": "values", "dimension": "country"}]},
    )
    range: GrafanaRange | None = None


class TagValuesBody(_Body):
    """``POST /tag-values``."""

    key: str


class AnnotationQuery(_Body):
    """The dashboard's annotation definition as Grafana sends it."""

    name: str = ""
    query: str = ""


class AnnotationsBody(_Body):
    """``POST /annotations``."""

    range: GrafanaRange
    annotation: AnnotationQuery = Field(default_factory=AnnotationQuery)


def instants(span: GrafanaRange) -> tuple[int, int]:
    """``(from, to)`` in epoch ms; a bad instant or an empty range is a 400."""
    try:
        start, end = parse_instant(span.from_, 0), parse_instant(span.to, 0)
    except ValueError as exc:
        raise ApiError(400, "invalid_time", str(exc)) from None
    if start >= end:
        raise ApiError(400, "invalid_range", "range.from must be before range.to")
    return start, end


def pick_step(window_ms: int, span_ms: int, interval_ms: int | None, max_points: int | None) -> int:
    """The finest step that is a multiple of the window, at least Grafana's interval,
    and gives at most ``maxDataPoints`` points over the span (the coarsest one otherwise)."""
    points = max(1, max_points or DEFAULT_MAX_POINTS)
    steps = sorted({window_ms, *(s for s in LADDER_MS if s % window_ms == 0)})
    floor = max(window_ms, interval_ms or 0)
    for step in steps:
        if step >= floor and span_ms // step <= points:
            return step
    widest = steps[-1]
    return widest * max(1, -(-span_ms // (widest * points)))


def as_list(raw: Any) -> list[str]:
    """A payload value as a list of strings: lists as they are, ``a,b`` and Grafana's
    regex-formatted multi-values ``(a|b)`` split; ``All``/``*``/empty means no values."""
    if raw is None:
        return []
    if isinstance(raw, list):
        items = [str(v) for v in raw]
    else:
        text = str(raw).strip()
        if text.startswith("(") and text.endswith(")") and "|" in text:
            items = [re.sub(r"\\(.)", r"\1", part) for part in text[1:-1].split("|")]
        else:
            items = [part.strip() for part in text.split(",")]
    return [v for v in items if v not in _ALL]


def payload_of(target: Target) -> dict[str, Any]:
    """The target's payload as an object (a JSON text payload is not ours to parse: 400)."""
    if target.payload is None or target.payload == "":
        return {}
    if isinstance(target.payload, str):
        raise ApiError(400, "invalid_payload", "the payload must be a JSON object")
    return target.payload


def filters_of(
    metric: MetricSpec, payload: dict[str, Any], adhoc: list[AdhocFilter]
) -> dict[str, list[str]]:
    """Dimension filters from the payload (one key per dimension) and the ad-hoc filters.

    Ad-hoc filters apply to the metrics that have the dimension and skip the
    others (a dashboard's filter bar spans every panel); only ``=`` exists
    in the engine, so any other operator is a 400.
    """
    found: dict[str, set[str]] = {}
    for key, raw in payload.items():
        if key in RESERVED_PAYLOADS:
            continue
        if key not in metric.dimensions:
            raise ApiError(
                400,
                "unknown_dimension",
                f"metric {metric.name!r} has no dimension {key!r} "
                f"(dimensions: {', '.join(metric.dimensions) or 'none'})",
            )
        values = as_list(raw)
        if values:
            found.setdefault(key, set()).update(values)
    for rule in adhoc:
        if rule.operator != "=":
            raise ApiError(
                400,
                "unsupported_filter",
                f"ad-hoc filter {rule.key} {rule.operator} {rule.value}: only = is supported",
            )
        if rule.key in metric.dimensions:
            found.setdefault(rule.key, set()).add(rule.value)
    return {k: sorted(v) for k, v in sorted(found.items())}


def group_by_of(metric: MetricSpec, payload: dict[str, Any]) -> list[str]:
    """The ``group_by`` payload: dimensions of the metric, at most three."""
    names = list(dict.fromkeys(as_list(payload.get("group_by"))))
    unknown = [n for n in names if n not in metric.dimensions]
    if unknown:
        raise ApiError(
            400, "unknown_dimension", f"metric {metric.name!r} has no dimension {unknown[0]!r}"
        )
    return names


def field_of(payload: dict[str, Any], is_ratio: bool) -> str:
    """The ``field`` payload: which number of each bucket the datapoints carry."""
    field = str(payload.get("field") or "value")
    allowed = RATIO_FIELDS if is_ratio else FIELDS
    if field not in allowed:
        raise ApiError(
            400, "invalid_field", f"field must be one of {', '.join(allowed)} (got {field!r})"
        )
    return field


def format_of(target: Target, payload: dict[str, Any]) -> Literal["time_series", "table"]:
    """``table`` when the payload's ``format`` (or the legacy ``type``) says so."""
    raw = payload.get("format") or target.type or "time_series"
    if raw == "table":
        return "table"
    if raw in ("time_series", "timeseries", "timeserie"):
        return "time_series"
    raise ApiError(400, "invalid_format", f"format must be time_series or table (got {raw!r})")


def series_name(metric: str, dims: dict[str, str]) -> str:
    """``metric`` or ``metric{dim="value",...}``: the legend of one series."""
    if not dims:
        return metric
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(dims.items()))
    return f"{metric}{{{inner}}}"


def frames(
    answer: dict[str, Any], field: str, fmt: Literal["time_series", "table"]
) -> list[dict[str, Any]]:
    """The engine's ``/query`` answer as the plugin's time series (one per group) or one table."""
    metric = answer["metric"]
    if fmt == "table":
        dims = list(answer["by"])
        rows = [
            [parse_instant(p["start"], 0), *(g["dims"].get(d, "") for d in dims), p.get(field)]
            for g in answer["groups"]
            for p in g["points"]
        ]
        rows.sort(key=lambda r: r[0])
        columns = [
            {"text": "Time", "type": "time"},
            *({"text": d, "type": "string"} for d in dims),
            {"text": metric if field == "value" else f"{metric} {field}", "type": "number"},
        ]
        return [{"type": "table", "columns": columns, "rows": rows}]
    return [
        {
            "target": series_name(metric, g["dims"]),
            "datapoints": [[p.get(field), parse_instant(p["start"], 0)] for p in g["points"]],
        }
        for g in answer["groups"]
    ]


def annotation_table(notes: list[dict[str, Any]]) -> dict[str, Any]:
    """Annotation events as the table Grafana maps to annotations (tags comma-joined)."""
    columns = [
        {"text": "time", "type": "time"},
        {"text": "timeEnd", "type": "time"},
        {"text": "title", "type": "string"},
        {"text": "text", "type": "string"},
        {"text": "tags", "type": "string"},
    ]
    rows = [
        [n["time"], n.get("timeEnd", n["time"]), n["title"], n["text"], ",".join(n["tags"])]
        for n in notes
    ]
    return {"type": "table", "columns": columns, "rows": rows}


def metric_config(metric: MetricSpec, is_ratio: bool) -> dict[str, Any]:
    """One entry of ``/metrics``: the metric and its payload options (group-by, field,
    format, and one multi-select filter per dimension whose values load on demand)."""
    return {
        "label": metric.name,
        "value": metric.name,
        "payloads": [
            {
                "label": "Group by",
                "name": "group_by",
                "type": "multi-select",
                "placeholder": "dimensions to split series by",
                "options": [{"label": d, "value": d} for d in metric.dimensions],
            },
            {
                "label": "Field",
                "name": "field",
                "type": "select",
                "options": [
                    {"label": f, "value": f} for f in (RATIO_FIELDS if is_ratio else FIELDS)
                ],
            },
            {
                "label": "Format",
                "name": "format",
                "type": "select",
                "options": [{"label": f, "value": f} for f in FORMATS],
            },
            *(
                {"label": d, "name": d, "type": "multi-select", "placeholder": f"only these {d}"}
                for d in metric.dimensions
            ),
        ],
    }


def options(values: list[str]) -> list[dict[str, str]]:
    """``[{label, value}]`` for a payload's drop-down."""
    return [{"label": v, "value": v} for v in values]


VARIABLE_HELP = (
    "variable queries: metrics | dimensions(<metric>) | values(<dimension>) | "
    "values(<metric>, <dimension>)"
)
_CALL = re.compile(r"^\s*(\w+)\s*(?:\(([^)]*)\))?\s*$")


def variable_query(payload: dict[str, Any] | str) -> tuple[str, list[str]]:
    """``(function, arguments)`` of a variable query: a text ``target`` such as
    ``values(revenue, country)`` or an object ``{"target": "values", "metric": …,
    "dimension": …}``; anything else is a 400 naming the forms."""
    if isinstance(payload, str):
        payload = {"target": payload}
    target = str(payload.get("target", ""))
    found = _CALL.match(target)
    if found is None:
        raise ApiError(400, "invalid_variable", f"{target!r}: {VARIABLE_HELP}")
    name = found.group(1)
    args = [a.strip() for a in (found.group(2) or "").split(",") if a.strip()]
    args += [str(payload[k]) for k in ("metric", "dimension") if payload.get(k)]
    arity = {"metrics": (0,), "dimensions": (1,), "values": (1, 2)}
    if name not in arity or len(args) not in arity[name]:
        raise ApiError(400, "invalid_variable", f"{target!r}: {VARIABLE_HELP}")
    return name, args
