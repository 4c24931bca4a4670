"""``riffle scheduler``: the scheduler process; ``riffle scheduler runs``: what it ran."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from types import FrameType
from typing import Annotated

import typer

from riffle.cli.common import clear_errors
from riffle.config.settings import get_settings

app = typer.Typer(
    help="Scheduled jobs: run the scheduler, list runs (docs/operations.md).",
    invoke_without_command=True,
)


@app.callback()
def scheduler(ctx: typer.Context) -> None:
    """Run scheduled jobs (reports, imports) until stopped; one scheduler is active at a time,
    others stand by (a Redis lease)."""
    if ctx.invoked_subcommand is not None:
        return
    from prometheus_client import REGISTRY

    from riffle.dataflows.scheduler.run import run_scheduler
    from riffle.jobs import build_kinds

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    settings = get_settings()
    with clear_errors():
        kinds = build_kinds(settings, REGISTRY)
        run_scheduler(settings, kinds, stop, REGISTRY)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@app.command("runs")
def runs(
    job: Annotated[str, typer.Argument(help="KIND:NAME, e.g. report:daily-shop.")],
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many, newest first.")] = 20,
) -> None:
    """The recorded runs of one job: status, attempts, times, error."""
    import redis

    from riffle.sinks.redis.schedule import ScheduleStore

    settings = get_settings()
    with clear_errors():
        store = ScheduleStore(redis.Redis.from_url(settings.redis_url), settings.redis_prefix)
        found = store.runs(job, limit)
    if not found:
        typer.echo(f"no runs of {job}")
        return
    for run in found:
        extra = f" missed={run.missed}" if run.missed else ""
        error = f" error={run.error}" if run.error else ""
        typer.echo(
            f"{run.id} {run.status} attempts={run.attempts} trigger={run.trigger}{extra} "
            f"due={_when(run.due)} started={_when(run.started_at)} "
            f"finished={_when(run.finished_at)}{error}"
        )
