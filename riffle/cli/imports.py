"""History: ``riffle import`` (files into windows), ``riffle replay --from-archive``,
``riffle backfill --metric`` and ``riffle imports list|show|run``.

``riffle import`` exits 0 when every row was accepted, 3 when it finished with
rejected rows (they are dead letters) and 4 when ``--max-errors`` stopped it.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from riffle.cli.common import clear_errors
from riffle.config.settings import Settings, get_settings

app = typer.Typer()
runs_app = typer.Typer(help="Import runs: list them, show one, carry out a queued one.")

EXIT_REJECTED = 3
EXIT_ABORTED = 4
LOG_EVERY_S = 5.0


def _lateness(text: str) -> float | None:
    from riffle.config.durations import parse_duration

    if text == "all":
        return None
    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: {exc} (or 'all')") from None


@app.command("import")
def import_(
    source: Annotated[
        str, typer.Argument(help="A file, directory, glob or gs://bucket/prefix; or an archive.")
    ],
    event_type: Annotated[
        str | None, typer.Option("--type", help="Event type of the rows (or the mapping's).")
    ] = None,
    mapping: Annotated[
        Path | None, typer.Option(help="Schema mapping YAML: columns to envelope and props.")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Tenant of the rows (default RIFFLE_DEFAULT_TENANT).")
    ] = None,
    source_id: Annotated[
        str, typer.Option(help="Name mixed into derived event ids (keeps two sources apart).")
    ] = "",
    max_errors: Annotated[
        int | None, typer.Option(min=0, help="Stop once more rows than this are rejected.")
    ] = None,
    lateness: Annotated[
        str, typer.Option(help="Every metric's lateness in this run (or 'all': no limit).")
    ] = "1h",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Map and check only: the first events, problems.")
    ] = False,
    show: Annotated[int, typer.Option(min=0, help="Events --dry-run prints.")] = 5,
    if_changed: Annotated[
        bool, typer.Option("--if-changed", help="Skip when the source is as last imported.")
    ] = False,
    archive: Annotated[
        bool, typer.Option(help="Archive accepted events too (with RIFFLE_ARCHIVE_URL).")
    ] = True,
    checkpoint_seconds: Annotated[
        float, typer.Option(min=0.1, help="How often the import saves where it is (to resume).")
    ] = 5.0,
) -> None:
    """Import history through the flow's decode, schema, enrich and aggregate steps."""
    from riffle.config.mapping import load_mapping
    from riffle.config.spec import load_spec
    from riffle.dataflows.imports import ImportRequest

    settings = get_settings()
    with clear_errors():
        spec = load_spec(settings.spec)
        request = ImportRequest(
            source=source,
            event_type=event_type,
            mapping=None if mapping is None else load_mapping(mapping),
            tenant=tenant,
            source_id=source_id,
            max_errors=max_errors,
            lateness_s=_lateness(lateness),
        )
        if dry_run:
            _dry_run(settings, request, show)
            return
        _run_recorded(
            settings,
            spec,
            request,
            if_changed=if_changed,
            archive=archive,
            checkpoint_s=checkpoint_seconds,
        )


def _run_recorded(
    settings: Settings,
    spec: Any,
    request: Any,
    *,
    if_changed: bool,
    archive: bool,
    run: Any = None,
    checkpoint_s: float = 5.0,
) -> None:
    import redis

    from riffle.dataflows.batch_sources import Progress
    from riffle.dataflows.import_runs import execute
    from riffle.sinks.redis.imports import ImportRun, ImportRunStore

    runs = ImportRunStore(redis.Redis.from_url(settings.redis_url), settings.redis_prefix)
    tenant = request.tenant or settings.default_tenant
    if run is None:
        run = ImportRun(
            id=uuid.uuid4().hex[:16],
            tenant=tenant,
            source=request.source,
            event_type=request.event_type,
            requested_by="cli",
        )
    progress = Progress()
    stop = threading.Event()
    shown = threading.Thread(target=_show_progress, args=(progress, stop), daemon=True)
    shown.start()
    try:
        if not archive:
            settings = settings.model_copy(update={"archive_url": None})
        run, _ = execute(
            settings,
            spec,
            request,
            runs,
            run,
            if_changed=if_changed,
            progress=progress,
            checkpoint_s=checkpoint_s,
        )
    finally:
        stop.set()
        shown.join()
    _print_run(run)
    if run.status == "failed":
        typer.echo(f"error: {run.error}", err=True)
        raise typer.Exit(1)
    if run.status == "aborted":
        raise typer.Exit(EXIT_ABORTED)
    if run.status == "rejected":
        raise typer.Exit(EXIT_REJECTED)


def _show_progress(progress: Any, stop: threading.Event) -> None:
    """A progress bar on a terminal; otherwise an ``import_progress`` log line every 5 s."""
    import structlog

    if sys.stderr.isatty():
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = (
            TextColumn("{task.fields[rows]:>12,} rows  {task.fields[rate]:>9,.0f} rows/s"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("import", total=None, rows=0, rate=0.0)
            while not stop.wait(0.2):
                bar.update(
                    task,
                    total=progress.total_bytes or None,
                    completed=progress.bytes_done,
                    rows=progress.rows,
                    rate=progress.rate,
                )
        return
    log = structlog.get_logger("riffle.import")
    while not stop.wait(LOG_EVERY_S):
        remaining = max(0, progress.total_bytes - progress.bytes_done)
        elapsed = max(1e-9, time.monotonic() - progress.started)
        byte_rate = progress.bytes_done / elapsed
        log.info(
            "import_progress",
            rows=progress.rows,
            bytes=progress.bytes_done,
            total_bytes=progress.total_bytes,
            rows_per_s=round(progress.rate),
            eta_s=round(remaining / byte_rate) if byte_rate else None,
            file=progress.file_index + 1,
            files=progress.files,
        )


def _print_run(run: Any) -> None:
    typer.echo(f"import {run.id}: {run.status}")
    typer.echo(
        f"  files {run.files}, rows read {run.rows_read:,}, accepted {run.accepted:,}, "
        f"rejected {run.rejected:,}, windows written {run.windows:,}"
    )
    for reason, count in run.rejected_by_reason.items():
        typer.echo(f"  rejected {count:>8,}  {reason}")
    for uri, error in run.file_errors.items():
        typer.echo(f"  file {uri}: {error}")
    for problem in run.problems[:10]:
        typer.echo(f"  {problem['source']}  {problem['path']}: {problem['reason']}")
    if run.error:
        typer.echo(f"  {run.error}")


def _dry_run(settings: Settings, request: Any, show: int) -> None:
    """Map every row, check envelope and schema; print the first events and every problem."""
    from collections import Counter

    from riffle.config.registry import load_schemas
    from riffle.operators.envelope import EnvelopeError, check
    from riffle.operators.mapping import RowMapper
    from riffle.operators.schemas import EventValidator
    from riffle.sources.files import read_rows
    from riffle.sources.storage import list_objects

    mapper = RowMapper(request.mapping, event_type=request.event_type, source_id=request.source_id)
    validate = EventValidator(load_schemas(settings.schemas_dir)).check
    shown = rows = 0
    problems: Counter[tuple[str, str, str]] = Counter()
    examples: dict[tuple[str, str, str], str] = {}
    for obj in list_objects(request.source):
        for chunk in read_rows(obj.uri):
            for number, raw in chunk.rows:
                rows += number > 0
                try:
                    event = mapper(raw)
                    check(event)
                    validate(event)
                except EnvelopeError as exc:
                    key = (exc.failure_type, exc.path, exc.reason[:120])
                    problems[key] += 1
                    examples.setdefault(key, f"{obj.uri.removeprefix('file://')}@{number}")
                    continue
                if shown < show:
                    typer.echo(orjson.dumps(event).decode())
                    shown += 1
    bad = sum(problems.values())
    typer.echo(f"dry run: {rows:,} rows, {rows - bad:,} would be accepted, {bad:,} rejected")
    for (failure, path, reason), count in problems.most_common():
        where = examples[(failure, path, reason)]
        typer.echo(f"  {count:>8,}  {failure} {path}: {reason}  (first: {where})")
    if bad:
        raise typer.Exit(EXIT_REJECTED)


def _range(start: str, end: str) -> tuple[int, int]:
    from riffle.api.times import parse_instant

    now = int(time.time() * 1000)
    try:
        return parse_instant(start, now), parse_instant(end, now)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _archive(settings: Settings, archive: str | None) -> Any:
    from riffle.config.errors import RiffleError
    from riffle.sinks.archive.store import ArchiveStore

    root = archive or settings.archive_url
    if not root:
        raise RiffleError("no archive: give --archive or set RIFFLE_ARCHIVE_URL")
    return ArchiveStore(root)


@app.command()
def replay(
    start: Annotated[str, typer.Option(help="From: RFC 3339, epoch ms, or -7d before now.")],
    end: Annotated[str, typer.Option(help="To (exclusive).")] = "now",
    from_archive: Annotated[
        bool, typer.Option("--from-archive", help="Read the raw archive (the only source).")
    ] = False,
    archive: Annotated[
        str | None, typer.Option(help="Archive root (default RIFFLE_ARCHIVE_URL).")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (default: all).")] = None,
    lateness: Annotated[str, typer.Option(help="Every metric's lateness in the run.")] = "2h",
) -> None:
    """Rebuild every window lying whole in [start, end) from the archived events."""
    if not from_archive:
        raise typer.BadParameter("replay reads the raw archive: add --from-archive")
    _replay(start, end, archive, tenant, None, lateness)


@app.command()
def backfill(
    metric: Annotated[str, typer.Option(help="The metric to compute history for.")],
    start: Annotated[str, typer.Option(help="From: RFC 3339, epoch ms, or -30d before now.")],
    end: Annotated[str, typer.Option(help="To (exclusive).")] = "now",
    archive: Annotated[
        str | None, typer.Option(help="Archive root (default RIFFLE_ARCHIVE_URL).")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (default: all).")] = None,
    lateness: Annotated[str, typer.Option(help="The metric's lateness in the run.")] = "2h",
) -> None:
    """Compute one metric's windows from the archive; other metrics' windows stay as they are."""
    _replay(start, end, archive, tenant, metric, lateness)


def _replay(
    start: str, end: str, archive: str | None, tenant: str | None, metric: str | None, late: str
) -> None:
    from riffle.config.spec import load_spec
    from riffle.dataflows.imports import run_replay

    settings = get_settings()
    begin, until = _range(start, end)
    with clear_errors():
        spec = load_spec(settings.spec)
        result = run_replay(
            settings,
            spec,
            _archive(settings, archive),
            begin,
            until,
            tenant=tenant,
            metric=metric,
            lateness_s=_lateness(late),
        )
    report = result.report
    what = f"metric {metric}" if metric else "every metric"
    typer.echo(
        f"replayed {what} from the archive: {report.windows:,} windows rewritten"
        + (f", {report.rejected:,} archived events no longer valid" if report.rejected else "")
    )


@runs_app.command("list")
def runs_list(
    tenant: Annotated[str | None, typer.Option(help="Default RIFFLE_DEFAULT_TENANT.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
) -> None:
    """The newest import runs."""
    store, settings = _runs()
    for run in store.recent(tenant or settings.default_tenant, limit):
        typer.echo(
            f"{run.id}  {run.status:10} rows {run.rows_read:>10,}  rejected {run.rejected:>8,}"
            f"  {run.requested_by:20}  {run.source}"
        )


@runs_app.command("show")
def runs_show(
    run_id: str,
    tenant: Annotated[str | None, typer.Option(help="Default RIFFLE_DEFAULT_TENANT.")] = None,
) -> None:
    """One run's record as JSON."""
    store, settings = _runs()
    run = store.get(tenant or settings.default_tenant, run_id)
    if run is None:
        typer.echo(f"error: no import run {run_id}", err=True)
        raise typer.Exit(1)
    typer.echo(run.model_dump_json(indent=2))


@runs_app.command("run")
def runs_run(
    run_id: str,
    tenant: Annotated[str, typer.Option(help="The run's tenant.")],
) -> None:
    """Carry out a queued run (what POST /v1/imports starts in a process of its own)."""
    from riffle.config.mapping import mapping_from
    from riffle.config.spec import load_spec
    from riffle.dataflows.imports import ImportRequest

    store, settings = _runs()
    run = store.get(tenant, run_id)
    if run is None:
        typer.echo(f"error: no import run {run_id}", err=True)
        raise typer.Exit(1)
    asked = run.request
    with clear_errors():
        mapping = asked.get("mapping")
        request = ImportRequest(
            source=run.source,
            event_type=run.event_type,
            mapping=None if mapping is None else mapping_from(mapping, "request"),
            tenant=tenant,
            source_id=asked.get("source_id", ""),
            max_errors=asked.get("max_errors"),
            lateness_s=asked.get("lateness_s", 3600.0),
        )
        _run_recorded(
            settings,
            load_spec(settings.spec),
            request,
            if_changed=bool(asked.get("if_changed", True)),
            archive=True,
            run=run,
        )


def _runs() -> tuple[Any, Settings]:
    import redis

    from riffle.sinks.redis.imports import ImportRunStore

    settings = get_settings()
    return ImportRunStore(redis.Redis.from_url(settings.redis_url), settings.redis_prefix), settings
