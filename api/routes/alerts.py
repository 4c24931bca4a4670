"""``/v1/alerts``: active alerts (Redis), their history (warehouse), the spec's rules,
and a simulator that runs a rule over stored windows."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from api.auth import Principal, require_scope
from api.deps import ServicesDep, Tenant
from api.errors import ApiError
from api.routes.acks import with_acks
from api.times import parse_instant
from config.alerts import AlertRule, AnomalyRule, rule_problems, untag
from operators.alerts import STATES, Observation, evaluate_series
from sinks.alert_store import RedisAlerts, WarehouseAlerts
from sinks.silences import SilenceSpec, SilenceStore

router = APIRouter(tags=["alerts"])
_RULE: TypeAdapter[AlertRule] = TypeAdapter(AlertRule)


def _range(start: str | None, end: str | None, default_ms: int) -> tuple[int, int]:
    now = int(time.time() * 1000)
    try:
        end_ms = parse_instant(end, now) if end else now
        start_ms = parse_instant(start, now) if start else end_ms - default_ms
    except ValueError as exc:
        raise ApiError(400, "bad_time", str(exc)) from exc
    return start_ms, end_ms


def _labels(matchers: list[str]) -> dict[str, str]:
    out = {}
    for m in matchers:
        name, sep, value = m.partition("=")
        if not sep or not name:
            raise ApiError(400, "bad_label", f"label filter {m!r} is not name=value")
        out[name] = value
    return out


@router.get("/v1/alerts", operation_id="listAlerts", summary="Active alert instances")
def list_alerts(
    app: ServicesDep,
    tenant: Tenant,
    state: Annotated[
        list[str] | None,
        Query(description="Only these states (pending, firing, recovering, nodata; normal too)."),
    ] = None,
    severity: Annotated[list[str] | None, Query(description="Only these severities.")] = None,
    label: Annotated[
        list[str] | None, Query(description="name=value; every one must match.")
    ] = None,
) -> dict[str, Any]:
    """The newest transition of every instance that is not Normal (or in ``state``), each
    with its ``ack`` (``POST /v1/alerts/{instance}/ack``) or ``null``."""
    state = state or []
    severity = severity or []
    for s in state:
        if s not in STATES:
            raise ApiError(400, "bad_state", f"unknown state {s!r} (known: {', '.join(STATES)})")
    wanted = _labels(label or [])
    store = RedisAlerts(app.hot.client, app.hot.prefix)
    rows = store.instances(tenant) if state else store.active(tenant)
    out = [
        r
        for r in rows
        if (not state or r["to_state"] in state)
        and (not severity or r["severity"] in severity)
        and all(r["labels"].get(k) == v for k, v in wanted.items())
    ]
    out.sort(key=lambda r: (-r["at"], r["rule"], r["instance"]))
    out = with_acks(app, tenant, out)
    return {"alerts": out, "count": len(out)}


def _table(app: ServicesDep) -> WarehouseAlerts:
    return WarehouseAlerts(app.warehouse)


@router.get(
    "/v1/alerts/history", operation_id="alertHistory", summary="Alert transitions, newest first"
)
def alert_history(
    app: ServicesDep,
    tenant: Tenant,
    start: str | None = Query(None, description="Event time; default -7d."),
    end: str | None = Query(None, description="Default now."),
    rule: str | None = None,
    instance: str | None = None,
    limit: int = Query(500, ge=1, le=10_000),
) -> dict[str, Any]:
    """Every transition with event time in ``[start, end)``."""
    start_ms, end_ms = _range(start, end, 7 * 86_400_000)
    rows = _table(app).history(tenant, start_ms, end_ms, rule=rule, instance=instance, limit=limit)
    return {"transitions": rows, "start": start_ms, "end": end_ms}


@router.get("/v1/alerts/rules", operation_id="listAlertRules", summary="The spec's rules")
def list_rules(app: ServicesDep, tenant: Tenant) -> dict[str, Any]:
    return {"rules": [r.model_dump(mode="json", by_alias=True) for r in app.spec.alerts]}


class SimulateRequest(BaseModel):
    """A rule (as in the spec's ``alerts:`` list) and the stored range to run it over."""

    rule: dict[str, Any]
    start: str | None = Field(None, description="Window starts from; default -24h.")
    end: str | None = Field(None, description="Default now.")


@router.post(
    "/v1/alerts/rules/simulate",
    operation_id="simulateAlertRule",
    summary="When a rule would have fired on stored windows",
)
def simulate(app: ServicesDep, tenant: Tenant, body: SimulateRequest) -> dict[str, Any]:
    """Runs the rule over the tenant's final windows in the warehouse, in event-time order,
    exactly as the alert stage would; returns the transitions it would have made."""
    try:
        rule = _RULE.validate_python(body.rule)
    except ValidationError as exc:
        problems = [
            {
                "field": ".".join(str(p) for p in untag(("alerts", 0, *err["loc"]))[2:]),
                "message": err["msg"],
            }
            for err in exc.errors()
        ]
        raise ApiError(
            422, "invalid_rule", "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        ) from exc
    issues = [
        f"{'.'.join(map(str, loc[2:]))}: {msg}"
        for loc, msg in rule_problems([rule], app.spec.metrics)
    ]
    if isinstance(rule, AnomalyRule):
        issues.append("kind: anomaly rules cannot be simulated yet (scores are not replayed)")
    if issues:
        raise ApiError(422, "invalid_rule", "; ".join(issues))
    metric = app.spec.metric(rule.metric)
    assert metric is not None
    start_ms, end_ms = _range(body.start, body.end, 86_400_000)
    series = app.warehouse.read_series(tenant, rule.metric, start_ms, end_ms)
    observations = [Observation.of_window(w) for _, windows in series for w in windows]
    merges = rule.group_by is not None and set(rule.group_by) != set(metric.dimensions)
    transitions = evaluate_series(rule, metric.aggregation, merges, observations)
    out = []
    for t in transitions:
        item = {
            "instance": t.instance,
            "labels": dict(t.labels),
            "from_state": t.from_state,
            "to_state": t.to_state,
            "at": t.at,
            "value": t.value,
            "active_at": t.active_at,
            "annotations": dict(t.annotations),
        }
        out.append(item)
    return {
        "rule": rule.name,
        "windows": len(observations),
        "transitions": out,
        "fired": sum(1 for t in transitions if t.to_state == "firing"),
        "start": start_ms,
        "end": end_ms,
    }


silences_router = APIRouter(tags=["silences"])


def _silences(app: ServicesDep) -> SilenceStore:
    return SilenceStore(app.hot.client, app.hot.prefix)


@silences_router.post(
    "/v1/silences",
    operation_id="createSilence",
    summary="Mute notifications of matching alerts for a time range",
    status_code=201,
)
def create_silence(
    app: ServicesDep,
    caller: Annotated[Principal, Depends(require_scope("admin"))],
    body: SilenceSpec,
) -> dict[str, Any]:
    """Matchers (``=``, ``!=``, ``=~``, ``!~`` on labels) and ``[starts_at, ends_at)`` in ms."""
    try:
        silence = _silences(app).create(caller.tenant, body)
    except ValueError as exc:
        raise ApiError(422, "invalid_silence", str(exc)) from exc
    return silence.model_dump()


@silences_router.get("/v1/silences", operation_id="listSilences", summary="Every silence")
def list_silences(
    app: ServicesDep,
    caller: Annotated[Principal, Depends(require_scope("read"))],
    active: bool = Query(False, description="Only silences in force now."),
) -> dict[str, Any]:
    now = int(time.time() * 1000)
    items = [
        s.model_dump() | {"active": s.active(now)}
        for s in _silences(app).list(caller.tenant)
        if not active or s.active(now)
    ]
    return {"silences": items}


@silences_router.delete(
    "/v1/silences/{silence_id}",
    operation_id="deleteSilence",
    summary="Remove a silence",
    status_code=204,
)
def delete_silence(
    app: ServicesDep,
    caller: Annotated[Principal, Depends(require_scope("admin"))],
    silence_id: str,
) -> Response:
    if not _silences(app).delete(caller.tenant, silence_id):
        raise ApiError(404, "not_found", f"no silence {silence_id!r}")
    return Response(status_code=204)
