"""``riffle reports``: the spec's scheduled reports; make (and send) one now."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from riffle.cli.common import clear_errors
from riffle.config.settings import get_settings

app = typer.Typer(help="Scheduled reports (docs/dashboards.md).", no_args_is_help=True)


@app.command("list")
def reports_list() -> None:
    """Each report of the spec: tenant, schedule, period, next run (UTC)."""
    from riffle.cli.scheduler import _when
    from riffle.config.spec import load_spec
    from riffle.operators.schedule import next_due

    settings = get_settings()
    with clear_errors():
        spec = load_spec(settings.spec)
    now = int(time.time() * 1000)
    for r in spec.reports:
        tenant = r.tenant or settings.default_tenant
        zone = spec.zone_of(tenant)
        due = next_due(r.schedule, zone, now)
        typer.echo(
            f"{r.name}\ttenant={tenant}\tschedule={r.schedule!r} ({zone})\tperiod={r.period}"
            f"\tnext={_when(due)}\treceivers={','.join(r.receivers)}"
        )
    if not spec.reports:
        typer.echo(f"{settings.spec} has no reports: section")


@app.command("run")
def reports_run(
    name: Annotated[str, typer.Argument(help="The report's name in the spec.")],
    period: Annotated[
        str,
        typer.Option(
            help="last (what a run due now covers), 2026-12-03, 2026-W49, 2026-11 or "
            "START/END, in the tenant's time zone."
        ),
    ] = "last",
    out: Annotated[
        Path, typer.Option(help="Folder the PDF and HTML are written to.", file_okay=False)
    ] = Path("."),
    deliver: Annotated[
        bool, typer.Option("--deliver/--no-deliver", help="Send it to the receivers too.")
    ] = True,
) -> None:
    """Make one report now for a period, write its PDF and HTML, and deliver it; the run is
    recorded with the scheduled ones (exit code 1 when a receiver did not take it)."""
    import redis
    from prometheus_client import CollectorRegistry

    from riffle.api.reports.jobs import KIND, report_jobs
    from riffle.operators.schedule import named_period
    from riffle.sinks.redis.schedule import Run, ScheduleStore, run_id

    settings = get_settings()
    with clear_errors():
        jobs = report_jobs(settings, CollectorRegistry())
        report = jobs.report(name)
        tenant = jobs.tenant_of(report)
        now = int(time.time() * 1000)
        try:
            span = named_period(period, report.period, jobs.spec.zone_of(tenant), now)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--period") from None
        store = ScheduleStore(redis.Redis.from_url(settings.redis_url), settings.redis_prefix)
        run = Run(
            id=run_id(f"{KIND}:{name}", now, manual=True), kind=KIND, job=name, tenant=tenant,
            due=now, trigger="manual", status="running", attempts=1, started_at=now,
        )  # fmt: skip
        details: dict[str, object] = {"period": {"start": span[0], "end": span[1]}}
        try:
            made = jobs.make(report, span, details)
            out.mkdir(parents=True, exist_ok=True)
            pdf = out / made.filename
            pdf.write_bytes(made.pdf)
            pdf.with_suffix(".html").write_text(made.html, encoding="utf-8")
            typer.echo(f"wrote {pdf} ({len(made.pdf)} bytes) and {pdf.with_suffix('.html')}")
            if deliver:
                details = jobs.deliver(report, run.id, made, details)
        finally:
            jobs.renderer.close()
        deliveries = details.get("deliveries", [])
        assert isinstance(deliveries, list)
        failed = [d for d in deliveries if d["status"] != "delivered"]
        for d in deliveries:
            typer.echo(f"{d['receiver']}/{d['channel']}: {d['status']} ({d['attempts']} attempts)"
                       + (f": {d['error']}" if d["error"] else ""))  # fmt: skip
        store.record(
            run.but(
                status="failed" if failed else "succeeded",
                finished_at=int(time.time() * 1000),
                error=failed[0]["error"] if failed else None,
                details=details,
            )
        )
    if failed:
        raise typer.Exit(1)
