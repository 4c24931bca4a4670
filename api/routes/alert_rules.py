"""``/v1/alerts/rules``: the spec's rules (read-only) and each tenant's own rules, created,
replaced and deleted through the API, and a simulator that runs a rule over stored history.

A tenant rule is validated exactly like a rule of the spec's ``alerts:`` list (same
models, same cross-checks against the spec's metrics); problems come back as 422
``invalid_rule`` with one ``{"field", "message"}`` per problem. Every change is an
entry of the versioned rule log (:mod:`sinks.redis.rules`) that the running dataflow
applies from the change's ``effective_from`` on, without a restart.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from riffle.api.bodies import ErrorResponse
from riffle.api.deps import AdminKey, AlertRules, ReadKey, ServicesDep
from riffle.api.errors import ApiError, error_response
from riffle.api.routes.alerts import time_range
from riffle.config.alerts import (
    AlertRule,
    AnomalyRule,
    ChangeRule,
    ForecastRule,
    rule_problems,
    untag,
)
from riffle.operators.alert_rules import RuleChange
from riffle.operators.alerts.evaluator import evaluate_series
from riffle.operators.alerts.observations import Observation
from riffle.sinks.redis.rules import AlertRuleStore, RuleExistsError, RuleMissingError
from riffle.sinks.warehouse.model_history import anomaly_observations, forecast_observations

router = APIRouter(tags=["alert rules"])
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorResponse, "description": "The name is taken, or the rule is the spec's."}
}
_RULE: TypeAdapter[AlertRule] = TypeAdapter(AlertRule)
_READ_ONLY = ("source", "version", "effective_from")
"""Keys a listed rule carries besides its own; accepted and ignored on the way back in."""


class InvalidRuleError(Exception):
    """A rule that would not load, with one ``(field, message)`` per problem."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" if f else m for f, m in problems))
        self.problems = problems

    def response(self) -> JSONResponse:
        problems = [{"field": f, "message": m} for f, m in self.problems]
        return error_response(422, "invalid_rule", str(self), problems=problems)


def parse_rule(app: ServicesDep, body: dict[str, Any]) -> AlertRule:
    """``body`` as a rule checked against the app's spec; :class:`InvalidRuleError` otherwise."""
    data = {k: v for k, v in body.items() if k not in _READ_ONLY}
    try:
        rule = _RULE.validate_python(data)
    except ValidationError as exc:
        raise InvalidRuleError(
            [
                (".".join(str(p) for p in untag(("alerts", 0, *err["loc"]))[2:]), err["msg"])
                for err in exc.errors()
            ]
        ) from exc
    problems = [
        (".".join(map(str, loc[2:])), msg) for loc, msg in rule_problems([rule], app.spec.metrics)
    ]
    if problems:
        raise InvalidRuleError(problems)
    return rule


def _spec_rule(app: ServicesDep, name: str) -> AlertRule | None:
    return next((r for r in app.spec.alerts if r.name == name), None)


def _dump(rule: AlertRule) -> dict[str, Any]:
    return rule.model_dump(mode="json", by_alias=True)


def _listed(entry: RuleChange) -> dict[str, Any]:
    assert entry.rule is not None
    return entry.rule | {
        "source": "api",
        "version": entry.seq,
        "effective_from": entry.effective_from,
    }


@router.get("/v1/alerts/rules", operation_id="listAlertRules", summary="Every rule in force")
def list_rules(app: ServicesDep, caller: ReadKey, rules: AlertRules) -> dict[str, Any]:
    """The spec's rules (``source: spec``) and the tenant's (``source: api``, with the
    ``version`` — the log position — and ``effective_from``, event time in ms)."""
    spec_rules = [_dump(r) | {"source": "spec"} for r in app.spec.alerts]
    return {"rules": spec_rules + [_listed(e) for e in rules.current(caller.tenant)]}


@router.get("/v1/alerts/rules/{name}", operation_id="getAlertRule", summary="One rule by name")
def get_rule(app: ServicesDep, caller: ReadKey, rules: AlertRules, name: str) -> dict[str, Any]:
    found = _spec_rule(app, name)
    if found is not None:
        return _dump(found) | {"source": "spec"}
    entry = rules.get(caller.tenant, name)
    if entry is None:
        raise ApiError(404, "not_found", f"no alert rule {name!r}")
    return _listed(entry)


def _read_only(app: ServicesDep, name: str) -> None:
    if _spec_rule(app, name) is not None:
        raise ApiError(
            409, "read_only", f"alert rule {name!r} is defined in the spec; change it there"
        )


@router.post(
    "/v1/alerts/rules",
    operation_id="createAlertRule",
    responses=_CONFLICT,
    summary="Add a rule; the running dataflow applies it from now on",
    status_code=201,
    response_model=None,
)
def create_rule(
    app: ServicesDep, caller: AdminKey, rules: AlertRules, body: dict[str, Any]
) -> dict[str, Any] | JSONResponse:
    """The rule as in the spec's ``alerts:`` list. 409 when the name is taken (by the
    spec or the tenant), 422 ``invalid_rule`` with the problems' field paths."""
    try:
        rule = parse_rule(app, body)
    except InvalidRuleError as exc:
        return exc.response()
    _read_only(app, rule.name)
    try:
        entry = rules.write(caller.tenant, rule.name, _dump(rule), "create")
    except RuleExistsError as exc:
        raise ApiError(409, "exists", str(exc)) from exc
    return _listed(entry)


@router.put(
    "/v1/alerts/rules/{name}",
    operation_id="replaceAlertRule",
    responses=_CONFLICT,
    summary="Replace a tenant rule from now on",
    response_model=None,
)
def replace_rule(
    app: ServicesDep, caller: AdminKey, rules: AlertRules, name: str, body: dict[str, Any]
) -> dict[str, Any] | JSONResponse:
    """A new version of the tenant's rule ``name`` (the body's ``name`` may be left out,
    or must match). 404 when there is none, 409 for a spec rule."""
    _read_only(app, name)
    if body.get("name", name) != name:
        return InvalidRuleError([("name", f"must be {name!r}, the rule replaced")]).response()
    try:
        rule = parse_rule(app, body | {"name": name})
    except InvalidRuleError as exc:
        return exc.response()
    try:
        entry = rules.write(caller.tenant, name, _dump(rule), "update")
    except RuleMissingError as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    return _listed(entry)


@router.delete(
    "/v1/alerts/rules/{name}",
    operation_id="deleteAlertRule",
    responses=_CONFLICT,
    summary="Delete a tenant rule from now on",
    status_code=204,
)
def delete_rule(app: ServicesDep, caller: AdminKey, rules: AlertRules, name: str) -> Response:
    """Its alerts that are not Normal resolve at the deletion's ``effective_from``."""
    _read_only(app, name)
    try:
        rules.write(caller.tenant, name, None, "delete")
    except RuleMissingError as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    return Response(status_code=204)


class SimulateRequest(BaseModel):
    """A rule (as in the spec's ``alerts:`` list) or the name of one in force, and the
    stored range to run it over."""

    rule: dict[str, Any] | None = None
    name: str | None = Field(None, description="A rule in force (spec or tenant) instead.")
    start: str | None = Field(None, description="Window starts from; default -24h.")
    end: str | None = Field(None, description="Default now.")


def _simulated_rule(
    app: ServicesDep, rules: AlertRuleStore, tenant: str, body: SimulateRequest
) -> AlertRule:
    if (body.rule is None) == (body.name is None):
        raise InvalidRuleError([("", "give either rule or name")])
    if body.rule is not None:
        return parse_rule(app, body.rule)
    assert body.name is not None
    found = _spec_rule(app, body.name)
    if found is not None:
        return found
    entry = rules.get(tenant, body.name)
    if entry is None or entry.rule is None:
        raise ApiError(404, "not_found", f"no alert rule {body.name!r}")
    return parse_rule(app, entry.rule)


@router.post(
    "/v1/alerts/rules/simulate",
    operation_id="simulateAlertRule",
    responses={404: {"model": ErrorResponse, "description": "No rule of that name."}},
    summary="When a rule would have fired on stored history",
    response_model=None,
)
def simulate(
    app: ServicesDep, caller: ReadKey, rules: AlertRules, body: SimulateRequest
) -> dict[str, Any] | JSONResponse:
    """Runs the rule over the tenant's stored final windows (and, for anomaly and forecast
    rules, the stored scores and forecasts) in event-time order with the stream's
    evaluator, and returns the transitions it would have made. Change rules against a
    ``period`` read one period more before ``start`` for their references; absence and
    NoData are judged up to ``end`` (or now); partial evaluation is not replayed (the
    warehouse holds finals, which decide)."""
    tenant = caller.tenant
    try:
        rule = _simulated_rule(app, rules, tenant, body)
    except InvalidRuleError as exc:
        return exc.response()
    metric = app.spec.metric(rule.metric)
    assert metric is not None
    start_ms, end_ms = time_range(body.start, body.end, 86_400_000)
    warm = rule.period_ms or 0 if isinstance(rule, ChangeRule) else 0
    series = app.warehouse.read_series(tenant, rule.metric, start_ms - warm, end_ms)
    observations = [Observation.of_window(w) for _, windows in series for w in windows]
    if isinstance(rule, AnomalyRule | ForecastRule):
        read = anomaly_observations if isinstance(rule, AnomalyRule) else forecast_observations
        models = read(app.warehouse, tenant, rule.metric, metric.window_ms, start_ms, end_ms)
        if isinstance(rule, AnomalyRule):
            observations = models
        else:
            observations += models
    merges = rule.group_by is not None and set(rule.group_by) != set(metric.dimensions)
    transitions = [
        t
        for t in evaluate_series(
            rule,
            metric.aggregation,
            merges,
            observations,
            window_ms=metric.window_ms,
            until=min(end_ms, int(time.time() * 1000)),
        )
        if t.at >= start_ms + metric.window_ms or not warm
    ]
    out = [
        {
            "instance": t.instance,
            "labels": dict(t.labels),
            "from_state": t.from_state,
            "to_state": t.to_state,
            "at": t.at,
            "value": t.value,
            "active_at": t.active_at,
            "annotations": dict(t.annotations),
        }
        for t in transitions
    ]
    return {
        "rule": rule.name,
        "windows": len(observations),
        "transitions": out,
        "fired": sum(1 for t in transitions if t.to_state == "firing"),
        "start": start_ms,
        "end": end_ms,
    }
