"""The OpenAPI document, made to say what the server checks.

FastAPI's generated document is completed here, for every operation (so a
route added later gets the same treatment without extra work):

- every error status the route can answer is documented with the one error
  body (:class:`api.models.ErrorResponse`): 400 (a malformed or unknown
  parameter) everywhere; 401, 403, 429 and 503 where a key is checked; 404
  where the path names something; 422 in our shape, not FastAPI's;
- health, readiness and ``/metrics`` are marked as open (a key is optional:
  the settings may close them);
- path identifiers get the values the spec allows (metric names, event
  types, entity types) or an example, and resources created by the API link
  to the operations that read, replace and delete them (OpenAPI links), so a
  client — or a contract test — can follow them;
- bodies the handlers parse themselves (events, alert rules) are described.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from riffle.api.bodies import ErrorResponse
from riffle.api.times import TIME_FORMS, TIME_PATTERN
from riffle.config.alerts import RESERVED_LABELS, AlertRule
from riffle.config.instants import MAX_INSTANT_MS
from riffle.config.spec import PipelineSpec

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Routes that answer without a key unless the settings close them."""
_ERROR = {"$ref": "#/components/schemas/ErrorResponse"}
_METHODS = frozenset({"get", "put", "post", "delete", "patch"})
TIME_EXAMPLES = {"start": "-1h", "since": "-1h", "end": "now", "until": "now"}
"""Parameters and body fields named so hold an instant (:func:`api.times.parse_instant`)."""
DURATION_PATTERN = r"^\d{1,9}(\.\d{1,3})?(ms|s|m|h|d)$"
LABEL_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
_AUTH_ERRORS = {
    "401": "Missing, unknown, revoked or expired key.",
    "403": "The key lacks the route's scope.",
    "429": "Rate limit of the key or the tenant exceeded (see Retry-After).",
    "503": "A store (Redis or the warehouse) did not answer; retry (see Retry-After).",
}


def install_openapi(app: FastAPI, spec: PipelineSpec, schema_types: list[str]) -> None:
    """Serve the completed document from ``app.openapi()`` (built once, on first use);
    ``schema_types`` are the event types of the schema registry."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = complete(doc, spec, schema_types)
        return with_now(app.openapi_schema, int(time.time() * 1000))

    app.openapi = openapi  # type: ignore[method-assign]


NOT_BEFORE_NOW = (("SilenceSpec", "ends_at"), ("AckSpec", "until"))
"""Body fields the server wants in the future: the document served says so as a minimum."""


def with_now(doc: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """``doc`` with the fields of ``NOT_BEFORE_NOW`` bounded below by ``now_ms``
    (a copy of just the schemas touched; ``doc`` is the cached document)."""
    schemas = doc.get("components", {}).get("schemas", {})
    touched = {name: copy.deepcopy(schemas[name]) for name, _ in NOT_BEFORE_NOW if name in schemas}
    for name, field in NOT_BEFORE_NOW:
        prop = touched.get(name, {}).get("properties", {}).get(field)
        if prop is not None:
            for option in [prop, *prop.get("anyOf", [])]:
                if option.get("type") == "integer":
                    option["minimum"] = now_ms
    if not touched:
        return doc
    return doc | {"components": doc["components"] | {"schemas": schemas | touched}}


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(path, method, operation)`` of every operation of ``doc``."""
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in _METHODS:
                yield path, method, op


def complete(doc: dict[str, Any], spec: PipelineSpec, schema_types: list[str]) -> dict[str, Any]:
    """``doc`` with errors, security, identifiers, links and bodies filled in."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(
        ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")["$defs"]
    )
    schemas["ErrorResponse"] = ErrorResponse.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    schemas["ErrorResponse"].pop("$defs", None)
    values = _identifier_values(spec, schema_types)
    for path, _, op in operations(doc):
        responses = op.setdefault("responses", {})
        if path in OPEN_PATHS:
            op["security"] = [{}, *op.get("security", [])]
        _error(responses, "400", "A parameter is malformed, out of range or unknown.")
        if "422" in responses:
            _error(responses, "422", "The request body or a parameter does not validate.", True)
        if op.get("security"):
            for status, text in _AUTH_ERRORS.items():
                _error(responses, status, text)
        for param in op.get("parameters", []):
            if param["in"] == "path":
                _error(responses, "404", "Nothing of that name for this tenant.")
            param["schema"].update(values.get((path, param["name"]), {}))
            if param["in"] == "query":
                _query_forms(param, spec)
    for schema in schemas.values():
        for name, prop in schema.get("properties", {}).items():
            if name in TIME_EXAMPLES:
                _time_form(prop, TIME_EXAMPLES[name])
    _links(doc)
    _bodies(doc, spec, list(spec.event_types))
    _grafana_bodies(schemas, spec)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return doc


def _error(responses: dict[str, Any], status: str, text: str, replace: bool = False) -> None:
    """Document ``status`` with the error body (``replace``: FastAPI's own body too)."""
    if status in responses and not replace:
        return
    described = responses.get(status, {}).get("description") or text
    if status == "422" and described == "Validation Error":
        described = text
    responses[status] = {
        "description": described,
        "content": {"application/json": {"schema": _ERROR}},
    }


def _query_forms(param: dict[str, Any], spec: PipelineSpec) -> None:
    """The forms of query parameters shared by many routes, by name."""
    name, schema = param["name"], param["schema"]
    if name in TIME_EXAMPLES:
        _time_form(schema, TIME_EXAMPLES[name])
    elif name == "metric":
        _string_items(schema, {"enum": [m.name for m in spec.metrics]})
    elif name == "period":
        _string_items(schema, {"pattern": DURATION_PATTERN, "examples": ["1h"]})


def _time_form(schema: dict[str, Any], example: str) -> None:
    """Document an instant: its forms, as a pattern, and an example that parses."""
    form = {"pattern": TIME_PATTERN, "minLength": 1, "maxLength": 64, "examples": [example]}
    _string_items(schema, form)
    schema["description"] = f"{schema.get('description', '')} Forms: {TIME_FORMS}.".strip()


def _string_items(schema: dict[str, Any], constraints: dict[str, Any]) -> None:
    """Add ``constraints`` to the string (or the strings of an array) ``schema`` holds."""
    if schema.get("type") == "string":
        schema.update(constraints)
    elif schema.get("type") == "array":
        _string_items(schema.setdefault("items", {}), constraints)
    for option in schema.get("anyOf", []):
        _string_items(option, constraints)


def _identifier_values(
    spec: PipelineSpec, schema_types: list[str]
) -> dict[tuple[str, str], dict[str, Any]]:
    """What each path identifier may be: an enum when the spec fixes it, else examples."""
    metrics = [m.name for m in spec.metrics] + [r.name for r in spec.ratios]
    forecast = [m.name for m in spec.metrics if m.forecast is not None]
    entities = sorted({p.entity for p in spec.predictions})
    rule = spec.alerts[0].name if spec.alerts else "high_error_rate"
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for suffix in ("", "/series", "/query"):
        out[(f"/v1/metrics/{{name}}{suffix}", "name")] = {"enum": metrics}
    dimensions = sorted({d for m in spec.metrics for d in m.dimensions})
    ranked = next((m for m in spec.metrics if m.dimensions), None)
    out[("/v1/metrics/{name}/top", "by")] = _enum_or_example(dimensions, "country")
    if ranked is not None:  # the examples: a metric that has the dimension ranked
        out[("/v1/metrics/{name}/top", "name")] = {"enum": metrics, "examples": [ranked.name]}
        out[("/v1/metrics/{name}/top", "by")]["examples"] = [ranked.dimensions[0]]
    out[("/v1/metrics/{name}/top", "compare")] = {"enum": ["previous_period"]}
    out[("/v1/metrics/{name}/top", "limit")] = {"minimum": 1, "maximum": 100}
    out[("/v1/metrics/{name}/query", "compare")] = {"enum": ["previous_period"]}
    out[("/v1/metrics/{name}/query", "step")] = {"enum": ["1m", "1h", "1d"]}
    one = f"({'|'.join(dimensions) or '[a-z][a-z0-9_]*'})"
    out[("/v1/metrics/{name}/query", "by")] = {"pattern": f"^{one}(,{one}){{0,2}}$"}
    out[("/v1/metrics/{name}/series", "group_by")] = {"pattern": f"^({one}(,{one})*)?$"}
    out[("/v1/dead-letters", "cursor")] = {"pattern": r"^[A-Za-z0-9_=-]{1,400}$"}
    out[("/v1/forecasts/{metric}", "metric")] = _enum_or_example(forecast, "revenue")
    out[("/v1/predictions/{entity_type}/{entity_id}", "entity_type")] = _enum_or_example(
        entities, "user"
    )
    out[("/v1/predictions/{entity_type}/{entity_id}", "entity_id")] = {"examples": ["u-1"]}
    out[("/v1/alerts/rules/{name}", "name")] = {
        "examples": ["contract_example", rule],
        "pattern": r"^[a-z][a-z0-9_]{0,62}$",
    }
    out[("/v1/silences/{silence_id}", "silence_id")] = {"examples": ["0" * 32]}
    out[("/v1/alerts/{instance}/ack", "instance")] = {"examples": [f"{rule}:0"]}
    out[("/v1/dead-letters/{letter_id}", "letter_id")] = {"examples": ["0" * 32]}
    out[("/v1/schemas/{event_type}/{version}", "event_type")] = _enum_or_example(
        schema_types, "purchase"
    )
    out[("/v1/schemas/{event_type}/{version}", "version")] = {"examples": ["latest", "1-0-0"]}
    out[("/v1/keys/{prefix}", "prefix")] = {"examples": ["3f9a0c1b2d4e"]}
    out[("/v1/dashboards/{dashboard_id}/panels/{panel_id}/export.{fmt}", "fmt")] = {
        "enum": ["png", "svg", "csv"]
    }
    out[("/v1/dashboards/{dashboard_id}/shares/{share_id}", "share_id")] = {"examples": ["0" * 16]}
    for suffix in ("query", "top"):
        out[(f"/v1/shared/metrics/{{name}}/{suffix}", "name")] = {"enum": metrics}
    out[("/v1/reports/{name}/runs", "name")] = {"examples": ["weekly"]}
    out[("/v1/imports/{run_id}", "run_id")] = {"examples": ["0" * 32]}
    return out


def _grafana_bodies(schemas: dict[str, Any], spec: PipelineSpec) -> None:
    """The Grafana bodies' names, from the spec: what the routes accept."""
    metrics = [m.name for m in spec.metrics] + [r.name for r in spec.ratios]
    dimensions = sorted({d for m in spec.metrics for d in m.dimensions})
    enums = {
        ("TagValuesBody", "key"): dimensions,
        ("PayloadOptionsBody", "metric"): metrics,
        ("PayloadOptionsBody", "name"): ["group_by", "field", "format", *dimensions],
        ("MetricsBody", "metric"): metrics,
    }
    for (model, field), values in enums.items():
        prop = schemas.get(model, {}).get("properties", {}).get(field)
        if prop is not None and values:
            _string_items(prop, {"enum": values})


def _enum_or_example(values: list[str], example: str) -> dict[str, Any]:
    return {"enum": values} if values else {"examples": [example]}


_LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, str]]] = {
    ("createAlertRule", "201", "name"): {
        "GetRule": ("getAlertRule", "name", "$response.body#/name"),
        "ReplaceRule": ("replaceAlertRule", "name", "$response.body#/name"),
        "DeleteRule": ("deleteAlertRule", "name", "$response.body#/name"),
    },
    ("createSilence", "201", "id"): {
        "DeleteSilence": ("deleteSilence", "silence_id", "$response.body#/id"),
    },
    ("createKey", "201", "prefix"): {
        "RevokeKey": ("revokeKey", "prefix", "$response.body#/prefix"),
    },
    ("ingestEvents", "200", "dead_letter_id"): {
        "GetDeadLetter": (
            "getDeadLetter",
            "letter_id",
            "$response.body#/results/0/dead_letter_id",
        ),
    },
}
"""Where a created resource's identifier is used next: the stateful phase follows these."""


def _links(doc: dict[str, Any]) -> None:
    by_id = {op.get("operationId"): op for _, _, op in operations(doc)}
    for (source, status, _), links in _LINKS.items():
        op = by_id.get(source)
        if op is None:
            continue
        response = op["responses"].setdefault(status, {"description": "Created."})
        for name, (target, param, expression) in links.items():
            if target in by_id:
                response.setdefault("links", {})[name] = {
                    "operationId": target,
                    "parameters": {param: expression},
                }


def _bodies(doc: dict[str, Any], spec: PipelineSpec, event_types: list[str]) -> None:
    """Request bodies of the handlers that read the raw body or a free-form object."""
    by_id = {op.get("operationId"): op for _, _, op in operations(doc)}
    schemas = doc["components"]["schemas"]
    rule = TypeAdapter(AlertRule).json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(rule.pop("$defs", {}))
    dimensions = sorted({d for m in spec.metrics for d in m.dimensions}) or ["country"]
    metrics = {
        "AnomalyRule": [m.name for m in spec.metrics if m.anomaly is not None],
        "ForecastRule": [m.name for m in spec.metrics if m.forecast is not None],
    }
    replacement: dict[str, Any] = {
        "oneOf": [],
        "discriminator": copy.deepcopy(rule.get("discriminator")),
    }
    for kind in rule.get("oneOf", []):
        name = kind["$ref"].rsplit("/", 1)[1]
        target = schemas[name]
        allowed = metrics.get(name) or [m.name for m in spec.metrics]
        target["properties"]["metric"] = {"type": "string", "enum": allowed}
        target["properties"]["labels"]["propertyNames"] = {
            "pattern": LABEL_PATTERN,
            "not": {"enum": sorted(RESERVED_LABELS)},
        }
        _string_items(target["properties"]["group_by"], {"enum": dimensions})
        # A replacement names its rule in the path: its body may leave the name out.
        without = copy.deepcopy(target)
        without["properties"].pop("name", None)
        without["required"] = [r for r in without.get("required", []) if r != "name"]
        schemas[f"{name}Replacement"] = without
        replacement["oneOf"].append({"$ref": f"#/components/schemas/{name}Replacement"})
    mapping = (replacement["discriminator"] or {}).get("mapping", {})
    for key, ref in mapping.items():
        mapping[key] = f"{ref}Replacement"
    schemas["AlertRule"] = rule
    schemas["AlertRuleReplacement"] = replacement
    rule_json: dict[str, Any] = {"schema": {"$ref": "#/components/schemas/AlertRule"}}
    rule_body: dict[str, Any] = {"required": True, "content": {"application/json": rule_json}}
    counted = next((m for m in spec.metrics if m.aggregation in ("count", "sum")), None)
    if counted is not None:
        rule_json["example"] = {
            "name": "contract_example",
            "kind": "threshold",
            "metric": counted.name,
            "op": "gt",
            "value": 1000,
            "for": "1m",
        }
    if "createAlertRule" in by_id:
        by_id["createAlertRule"]["requestBody"] = rule_body
    if "replaceAlertRule" in by_id:
        replaced = copy.deepcopy(rule_body)
        content = replaced["content"]["application/json"]
        content["schema"] = {"$ref": "#/components/schemas/AlertRuleReplacement"}
        if "example" in content:
            content["example"].pop("name")
        by_id["replaceAlertRule"]["requestBody"] = replaced
    if "SimulateRequest" in schemas and spec.alerts:
        schemas["SimulateRequest"]["examples"] = [
            {"name": spec.alerts[0].name, "start": "-1h", "end": "now"}
        ]
    if "SilenceSpec" in schemas:
        schemas["SilenceSpec"]["examples"] = [
            {
                "matchers": [{"name": "alertname", "op": "=~", "value": "api_.*"}],
                "ends_at": MAX_INSTANT_MS,
                "comment": "maintenance window",
                "created_by": "ops",
            }
        ]
    simulate = schemas.get("SimulateRequest", {})
    if "rule" in simulate.get("properties", {}):
        simulate["properties"]["rule"] = {
            "$ref": "#/components/schemas/AlertRule",
            "description": "A rule as in the spec's alerts: list.",
        }
        simulate["properties"]["name"] = {
            "type": "string",
            "pattern": r"^[a-z][a-z0-9_]{0,62}$",
            "description": "A rule in force (spec or tenant) instead.",
        }
        simulate["oneOf"] = [{"required": ["rule"]}, {"required": ["name"]}]
    schemas["Event"] = {
        "type": "object",
        "description": "One event: its type's schema checks props; rejected events become "
        "dead letters (status rejected), they do not fail the request.",
        "required": ["type", "ts"],
        "properties": {
            "type": {"type": "string", "enum": event_types},
            "ts": {
                "anyOf": [
                    {"type": "integer", "minimum": 0, "maximum": MAX_INSTANT_MS},
                    {"type": "string", "format": "date-time"},
                ],
                "description": "Event time: epoch ms or RFC 3339.",
            },
            "event_id": {"type": "string", "minLength": 1, "maxLength": 200},
            "props": {"type": "object"},
            "context": {"type": "object"},
        },
    }
    if "ingestEvents" in by_id:
        event = {"$ref": "#/components/schemas/Event"}
        by_id["ingestEvents"]["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"anyOf": [event, {"type": "array", "items": event, "minItems": 1}]},
                    "example": {"type": event_types[0], "ts": 1_767_225_600_000, "props": {}}
                    if event_types
                    else {},
                },
                "application/x-ndjson": {
                    "schema": {"type": "string", "description": "One JSON event per line."}
                },
            },
        }
