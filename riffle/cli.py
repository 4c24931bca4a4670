"""The ``riffle`` command: run the flow, the API, the demo producer, or the whole stack.

Every command reads :func:`config.settings.get_settings` (``RIFFLE_*``
variables) and logs through :mod:`riffle.logging`. Errors Riffle raises on
purpose (:class:`~config.errors.RiffleError`) end the command with their
message on stderr and exit code 1; invalid settings exit with code 2.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from pydantic import ValidationError

from riffle.config.errors import RiffleError
from riffle.config.settings import Settings, get_settings
from riffle.config.spec import load_spec
from riffle.docs import effective_settings, settings_table
from riffle.logging import configure_logging

app = typer.Typer(
    name="riffle",
    help="Riffle: streaming analytics on Bytewax. Settings come from RIFFLE_* variables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
topics_app = typer.Typer(help="Kafka topics Riffle reads and writes.", no_args_is_help=True)
spec_app = typer.Typer(help="The pipeline spec.", no_args_is_help=True)
recovery_app = typer.Typer(help="The dataflow's recovery store.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(spec_app, name="spec")
app.add_typer(recovery_app, name="recovery")
warehouse_app = typer.Typer(help="The warehouse (DuckDB or BigQuery).", no_args_is_help=True)
app.add_typer(warehouse_app, name="warehouse")
keys_app = typer.Typer(help="API keys of tenants (stored hashed in Redis).", no_args_is_help=True)
schemas_app = typer.Typer(help="The event schema registry.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(schemas_app, name="schemas")
models_app = typer.Typer(help="The online models (docs/models.md).", no_args_is_help=True)
app.add_typer(models_app, name="models")


@app.callback()
def _main() -> None:
    """Load the settings and set up logging before any command runs."""
    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        lines = [
            f"  RIFFLE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        ]
        typer.echo("invalid settings:\n" + "\n".join(lines), err=True)
        raise typer.Exit(2) from None


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Turn a RiffleError into its message on stderr and exit code 1."""
    try:
        yield
    except RiffleError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def run(
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="Worker threads in this process.")
    ] = 1,
    process_id: Annotated[
        int | None,
        typer.Option("--process-id", "-i", min=0, help="This process's index in --addresses."),
    ] = None,
    addresses: Annotated[
        str | None,
        typer.Option(
            "--addresses", "-a", help="host:port of every process of the cluster, separated by ';'."
        ),
    ] = None,
    recovery_dir: Annotated[
        Path | None,
        typer.Option(
            "--recovery-dir",
            "-r",
            help="Resume from and snapshot to this store (RIFFLE_RECOVERY_DIR).",
        ),
    ] = None,
    snapshot_seconds: Annotated[
        float | None,
        typer.Option(
            "--snapshot-seconds", "-s", help="Snapshot interval (RIFFLE_SNAPSHOT_SECONDS)."
        ),
    ] = None,
) -> None:
    """Run the metrics dataflow (Kafka in; Redis, warehouse, dead letters out)."""
    if (process_id is None) != (addresses is None):
        raise typer.BadParameter("--process-id and --addresses go together")
    hosts = [a.strip() for a in addresses.split(";") if a.strip()] if addresses else None
    if hosts is not None and process_id is not None and process_id >= len(hosts):
        raise typer.BadParameter(f"--process-id {process_id} is not an index of --addresses")
    from riffle.dataflows.runner import run_dataflow

    settings = get_settings()
    overrides: dict[str, object] = {}
    if recovery_dir is not None:
        overrides["recovery_dir"] = recovery_dir
    if snapshot_seconds is not None:
        overrides["snapshot_seconds"] = snapshot_seconds
    with _clear_errors():
        run_dataflow(
            settings.model_copy(update=overrides),
            workers=workers,
            process_id=process_id,
            addresses=hosts,
        )


@recovery_app.command("init")
def recovery_init(
    directory: Annotated[Path, typer.Argument(help="Directory of the recovery store.")],
    partitions: Annotated[
        int,
        typer.Option(
            "--partitions", "-p", min=1, help="Store partitions: one per process you will run."
        ),
    ] = 1,
) -> None:
    """Prepare a recovery store for `riffle run --recovery-dir`."""
    from riffle.dataflows.runner import init_recovery

    with _clear_errors():
        init_recovery(directory, partitions)
    typer.echo(f"recovery store ready: {directory} ({partitions} partitions)")


@app.command()
def api(
    host: Annotated[
        str | None, typer.Option(help="Bind address (default RIFFLE_API_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default RIFFLE_API_PORT).")] = None,
) -> None:
    """Serve the HTTP API with uvicorn."""
    import uvicorn

    from riffle.api.app import create_app

    settings = get_settings()
    with _clear_errors():
        application = create_app(settings)
    uvicorn.run(
        application, host=host or settings.api_host, port=port or settings.api_port, log_config=None
    )


@app.command()
def notify() -> None:
    """Deliver alert notifications: read riffle.alerts, route, group, send (docs/alerts.md)."""
    from riffle.dataflows.notifier import run_notifier

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with _clear_errors():
        run_notifier(get_settings(), stop)


@app.command("demo-produce")
def demo_produce(
    rate: Annotated[float, typer.Option(min=0.001, help="Mean events per second.")] = 200.0,
    duration: Annotated[
        float | None,
        typer.Option(min=0, help="Stop after this many seconds (default: run until Ctrl-C)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generator; same seed, same events.")] = 0,
    topic: Annotated[
        str | None,
        typer.Option(help="Topic to write to (default RIFFLE_EVENTS_TOPIC); created if missing."),
    ] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
) -> None:
    """Send demo web-shop events to Kafka; exit 1 if any were not acknowledged."""
    from riffle.sources.demo import produce
    from riffle.sources.topics import ensure_topics

    settings = get_settings()
    target = topic or settings.events_topic
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with _clear_errors():
        ensure_topics(settings.kafka_servers, [target], settings.topic_partitions)
        summary = produce(
            settings.kafka_servers,
            target,
            rate=rate,
            seed=seed,
            duration=duration,
            count=count,
            stop=stop,
        )
    if summary.failed:
        raise typer.Exit(1)


@topics_app.command("create")
def topics_create(
    partitions: Annotated[
        int | None,
        typer.Option(min=1, help="Partitions of new topics (default RIFFLE_TOPIC_PARTITIONS)."),
    ] = None,
) -> None:
    """Create the events and dead-letter topics if they do not exist."""
    from riffle.sources.topics import ensure_topics

    settings = get_settings()
    names = [settings.events_topic, settings.deadletter_topic]
    with _clear_errors():
        ensure_topics(settings.kafka_servers, names, partitions or settings.topic_partitions)
    typer.echo(f"topics ready at {settings.kafka_servers}: {', '.join(names)}")


@spec_app.command("check")
def spec_check(
    path: Annotated[
        Path | None, typer.Argument(help="Spec file (default RIFFLE_SPEC, the demo spec).")
    ] = None,
) -> None:
    """Load a spec; print its errors as file:line: field: message and exit 1, or a summary."""
    target = path or get_settings().spec
    with _clear_errors():
        spec = load_spec(target)
    typer.echo(
        f"{target}: ok ({len(spec.event_types)} event types, "
        f"{len(spec.dimensions)} dimensions, {len(spec.metrics)} metrics)"
    )


@warehouse_app.command("init")
def warehouse_init() -> None:
    """Create the warehouse's tables and views, add missing columns, set partition
    expiration to the spec's retention.warehouse; safe to repeat."""
    from riffle.sinks.warehouse.engines import open_warehouse

    settings = get_settings()
    with _clear_errors():
        warehouse = open_warehouse(settings, load_spec(settings.spec).retention.warehouse)
        warehouse.init()
    typer.echo(f"warehouse ready: {warehouse.url}")


@warehouse_app.command("compact")
def warehouse_compact(
    min_age_minutes: Annotated[
        float,
        typer.Option(
            min=0,
            help="Only rows written at least this long ago (BigQuery refuses DML on rows "
            "in its streaming buffer: keep 90 or more there).",
        ),
    ] = 90.0,
) -> None:
    """Delete superseded raw rows (BigQuery) and expired rows (DuckDB); safe while the flow
    writes, and to repeat: what readers see does not change."""
    import time

    from riffle.sinks.warehouse.engines import open_warehouse

    settings = get_settings()
    with _clear_errors():
        warehouse = open_warehouse(settings, load_spec(settings.spec).retention.warehouse)
        removed = warehouse.compact(int(min_age_minutes * 60_000))
        expired = warehouse.expire(int(time.time() * 1000))
    for table, count in removed.items():
        typer.echo(f"{table}: {count} superseded rows removed")
    for table, count in expired.items():
        typer.echo(f"{table}: {count} expired rows removed")
    typer.echo(f"warehouse compacted: {warehouse.url}")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key acts for.")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated scopes among ingest, read, admin.")
    ] = "ingest,read",
    expires: Annotated[
        str | None,
        typer.Option(help="Expiry: RFC 3339 instant or a duration from now (30d, 12h)."),
    ] = None,
    name: Annotated[str, typer.Option(help="A label for people.")] = "",
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from riffle.keys import create_key

    with _clear_errors():
        key, record = create_key(get_settings(), tenant, scopes, expires, name)
    typer.echo(key)
    typer.echo(
        f"prefix {record.prefix}, tenant {record.tenant}, scopes {','.join(record.scopes)}"
        + (f", expires {record.expires_at} (epoch ms)" if record.expires_at else "")
        + ": store the key now, it is not shown again",
        err=True,
    )


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
) -> None:
    """List keys (prefix, tenant, scopes, state); never the secrets."""
    from riffle.keys import list_keys

    with _clear_errors():
        for line in list_keys(get_settings(), tenant):
            typer.echo(line)


@keys_app.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="The key's prefix.")]) -> None:
    """Revoke a key by its prefix; exit 1 if there is none."""
    from riffle.keys import revoke_key

    with _clear_errors():
        revoke_key(get_settings(), prefix)
    typer.echo(f"revoked {prefix}")


@schemas_app.command("check")
def schemas_check(
    directory: Annotated[
        Path | None, typer.Argument(help="Registry directory (default RIFFLE_SCHEMAS_DIR).")
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(help="The published registry (e.g. main's): versions in both must agree."),
    ] = None,
) -> None:
    """Refuse incompatible schema edits within a MODEL; print the problems and exit 1."""
    from riffle.config.registry import check_registry, load_schemas

    target = directory or get_settings().schemas_dir
    with _clear_errors():
        problems = check_registry(target, baseline)
        count = sum(len(v) for v in load_schemas(target).values())
    if problems:
        for problem in problems:
            typer.echo(f"incompatible: {problem}", err=True)
        typer.echo(
            "error: breaking changes need a new MODEL version (2-0-0), not an edit", err=True
        )
        raise typer.Exit(1)
    typer.echo(f"{target}: ok ({count} schema versions, compatible within each MODEL)")


@models_app.command("backtest")
def models_backtest(
    metric: Annotated[str, typer.Option(help="The metric whose stored windows to replay.")],
    start: Annotated[str, typer.Option(help="From: RFC 3339, epoch ms, or -7d before now.")],
    end: Annotated[str, typer.Option(help="Until (exclusive); same forms, or now.")] = "now",
    detector: Annotated[
        str | None, typer.Option(help="Detector name (default: the metric's, else riffle).")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(min=0, max=1, help="Anomaly threshold (default: the spec's).")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Tenant (default RIFFLE_DEFAULT_TENANT).")
    ] = None,
    show: Annotated[
        str, typer.Option(help="Rows to list: flagged (warning, anomaly), anomaly, all, none.")
    ] = "flagged",
) -> None:
    """Replay a detector (and the metric's forecaster) over stored windows; print what it flags.

    Uses the same model classes as the dataflow's model stage, one series at
    a time, from the warehouse's final windows of the metric.
    """
    import time

    from riffle.api.times import parse_instant
    from riffle.config.models import AnomalySpec
    from riffle.config.spec import load_spec
    from riffle.operators.models.backtest import backtest
    from riffle.operators.models.registry import DETECTORS
    from riffle.sinks.warehouse.engines import open_warehouse

    if show not in ("flagged", "anomaly", "all", "none"):
        raise typer.BadParameter("one of flagged, anomaly, all, none", param_hint="--show")
    settings = get_settings()
    with _clear_errors():
        spec = load_spec(settings.spec)
        found = spec.metric(metric)
        if found is None:
            raise typer.BadParameter(f"no metric named {metric!r}", param_hint="--metric")
        name = detector or (found.anomaly.detector if found.anomaly else "riffle")
        if name not in DETECTORS:
            known = ", ".join(sorted(DETECTORS))
            raise typer.BadParameter(
                f"unknown detector {name!r} ({known})", param_hint="--detector"
            )
        base = found.anomaly or AnomalySpec()
        limit = threshold if threshold is not None else base.threshold
        anomaly = AnomalySpec(detector=name, warning=min(base.warning, limit), threshold=limit)
        now = int(time.time() * 1000)
        try:
            start_ms, end_ms = parse_instant(start, now), parse_instant(end, now)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        series = open_warehouse(settings).read_series(
            tenant or settings.default_tenant, metric, start_ms, end_ms
        )
        report = backtest(
            series,
            metric=metric,
            window_ms=found.window_ms,
            anomaly=anomaly,
            forecast=found.forecast,
        )
    wanted = {"flagged": {"warning", "anomaly"}, "anomaly": {"anomaly"}, "none": set()}
    labels = wanted.get(show)
    rows = [f for f in report.flags if labels is None or f.label in labels]
    if rows:
        typer.echo(f"{'series':40} {'window start (UTC)':20} {'value':>12} {'score':>6}  label")
        for f in rows:
            at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(f.window_start / 1000))
            dims = ",".join(f"{k}={v}" for k, v in f.dims) or "(all)"
            typer.echo(f"{dims[:40]:40} {at:20} {f.value:12.4g} {f.score:6.3f}  {f.label}")
        typer.echo("")
    typer.echo(f"detector {report.detector}, threshold {report.threshold:g}")
    for s in report.series:
        dims = ",".join(f"{k}={v}" for k, v in s.dims) or "(all)"
        line = (
            f"{dims}: {s.windows} windows, {s.scored} scored, {s.warnings} warnings,"
            f" {s.anomalies} anomalies"
        )
        if s.smape is not None:
            line += (
                f"; forecast sMAPE {s.smape:.1f}% vs seasonal-naive {s.naive_smape:.1f}%,"
                f" coverage {s.coverage:.2f}"
            )
        typer.echo(line)
    total = sum(s.windows for s in report.series)
    typer.echo(f"total: {len(report.series)} series, {total} windows, {report.anomalies} anomalies")


@app.command()
def up(
    rate: Annotated[float, typer.Option(min=0.001, help="Demo events per second.")] = 200.0,
) -> None:
    """Start the whole system locally (broker, Redis if needed, flow, API, demo traffic)."""
    from riffle.stack import up as run_stack

    with _clear_errors():
        code = run_stack(get_settings(), rate=rate, echo=typer.echo)
    raise typer.Exit(code)


@app.command("settings")
def show_settings(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the reference table of every setting instead.")
    ] = False,
) -> None:
    """Print the effective settings as RIFFLE_NAME=value lines, secrets masked."""
    if markdown:
        typer.echo(settings_table())
        return
    for name, value in effective_settings(get_settings()):
        typer.echo(f"{name}={value}")


if __name__ == "__main__":
    app()
