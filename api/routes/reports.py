"""``/v1/reports``: the caller's scheduled reports and what their runs did (scope ``read``).

Reports are defined in the spec's ``reports:`` (``config.reports``) and run by
``riffle scheduler``; a tenant sees only its own. Each run lists its status,
attempts, times, error and deliveries (receiver, channel, status, attempts).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query

from riffle.api.bodies import ErrorResponse
from riffle.api.deps import ReadKey, Schedules, ServicesDep, Spec
from riffle.api.errors import ApiError
from riffle.api.times import format_instant
from riffle.config.reports import ReportSpec
from riffle.operators.schedule import next_due
from riffle.sinks.redis.schedule import Run

KIND = "report"
router = APIRouter(prefix="/v1/reports", tags=["reports"])


def _run(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": run.status,
        "trigger": run.trigger,
        "due": format_instant(run.due),
        "missed": run.missed,
        "attempts": run.attempts,
        "started_at": None if run.started_at is None else format_instant(run.started_at),
        "finished_at": None if run.finished_at is None else format_instant(run.finished_at),
        "error": run.error,
        "period": run.details.get("period"),
        "deliveries": run.details.get("deliveries", []),
    }


def _mine(app: ServicesDep, spec: Spec, tenant: str) -> list[ReportSpec]:
    default = app.settings.default_tenant
    return [r for r in spec.reports if (r.tenant or default) == tenant]


@router.get("", operation_id="listReports", summary="The caller's scheduled reports")
def list_reports(caller: ReadKey, app: ServicesDep, spec: Spec, store: Schedules) -> Any:
    """Each report: its schedule on the tenant's clock, period, receivers, next and last run."""
    zone = spec.zone_of(caller.tenant)
    now = int(time.time() * 1000)
    out = []
    for r in _mine(app, spec, caller.tenant):
        last = store.runs(f"{KIND}:{r.name}", 1)
        out.append(
            {
                "name": r.name,
                "title": r.heading,
                "schedule": r.schedule,
                "time_zone": zone,
                "period": r.period,
                "dashboard": r.dashboard,
                "metrics": r.metrics,
                "receivers": r.receivers,
                "next_run": format_instant(next_due(r.schedule, zone, now)),
                "last_run": _run(last[0]) if last else None,
            }
        )
    return {"reports": out}


@router.get(
    "/{name}/runs",
    operation_id="listReportRuns",
    summary="Runs of one report, newest first",
    responses={404: {"model": ErrorResponse, "description": "No report of that name."}},
)
def report_runs(
    name: str,
    caller: ReadKey,
    app: ServicesDep,
    spec: Spec,
    store: Schedules,
    limit: int = Query(20, ge=1, le=200),
) -> Any:
    """Status, attempts, times, error and deliveries of each recorded run."""
    if name not in {r.name for r in _mine(app, spec, caller.tenant)}:
        raise ApiError(404, "unknown_report", f"no report {name!r}")
    return {"runs": [_run(r) for r in store.runs(f"{KIND}:{name}", limit)]}
