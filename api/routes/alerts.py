"""``/v1/alerts``: active alerts (Redis) and their history (warehouse); rules and the
simulator are in :mod:`api.routes.alert_rules`, silences in :mod:`api.routes.silences`."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query

from riffle.api.deps import Acks, AlertHistory, AlertStates, Tenant
from riffle.api.errors import ApiError
from riffle.api.routes.acks import with_acks
from riffle.api.times import format_instant, parse_instant
from riffle.config.alerts import Severity
from riffle.operators.alerts.machine import STATES

router = APIRouter(tags=["alerts"])


def time_range(start: str | None, end: str | None, default_ms: int) -> tuple[int, int]:
    """``(start, end)`` in epoch ms (default: ``default_ms`` before end, and now).

    400 ``bad_time`` for a value that does not read, ``invalid_range`` when start
    is not before end.
    """
    now = int(time.time() * 1000)
    try:
        end_ms = parse_instant(end, now) if end is not None else now
        start_ms = parse_instant(start, now) if start is not None else end_ms - default_ms
    except ValueError as exc:
        raise ApiError(400, "bad_time", str(exc)) from exc
    if start_ms >= end_ms:
        raise ApiError(
            400,
            "invalid_range",
            f"start ({format_instant(start_ms)}) must be before end ({format_instant(end_ms)})",
        )
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
    states: AlertStates,
    acks: Acks,
    tenant: Tenant,
    state: Annotated[
        list[str] | None,
        Query(
            description="Only these states (pending, firing, recovering, nodata; normal too).",
            json_schema_extra={"items": {"type": "string", "enum": list(STATES)}},
        ),
    ] = None,
    severity: Annotated[list[Severity] | None, Query(description="Only these severities.")] = None,
    metric: Annotated[list[str] | None, Query(description="Only alerts on these metrics.")] = None,
    label: Annotated[
        list[str] | None,
        Query(
            description="name=value; every one must match.",
            json_schema_extra={"items": {"type": "string", "pattern": "^[^=]+=.*$"}},
        ),
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
    rows = states.instances(tenant) if state else states.active(tenant)
    out = [
        r
        for r in rows
        if (not state or r["to_state"] in state)
        and (not severity or r["severity"] in severity)
        and (not metric or r.get("metric") in metric)
        and all(r["labels"].get(k) == v for k, v in wanted.items())
    ]
    out.sort(key=lambda r: (-r["at"], r["rule"], r["instance"]))
    out = with_acks(acks, tenant, out)
    return {"alerts": out, "count": len(out)}


@router.get(
    "/v1/alerts/history", operation_id="alertHistory", summary="Alert transitions, newest first"
)
def alert_history(
    history: AlertHistory,
    tenant: Tenant,
    start: str | None = Query(None, description="Event time; default -7d."),
    end: str | None = Query(None, description="Default now."),
    rule: str | None = None,
    instance: str | None = None,
    limit: int = Query(500, ge=1, le=10_000),
) -> dict[str, Any]:
    """Every transition with event time in ``[start, end)``."""
    start_ms, end_ms = time_range(start, end, 7 * 86_400_000)
    rows = history.history(tenant, start_ms, end_ms, rule=rule, instance=instance, limit=limit)
    return {"transitions": rows, "start": start_ms, "end": end_ms}
