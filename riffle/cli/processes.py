"""The long-running processes: the dataflow, the API, the notifier, the demo producer and
the whole local stack (each a top-level command)."""

from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from riffle.cli.common import clear_errors
from riffle.config.cluster import cluster_identity
from riffle.config.settings import get_settings

app = typer.Typer()


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
    """Run the metrics dataflow (Kafka in; Redis, warehouse, dead letters out).

    Without -i/-a, RIFFLE_CLUSTER_SIZE > 0 makes this process the pod ordinal of
    its host name (or RIFFLE_POD_NAME) in a cluster at RIFFLE_CLUSTER_ADDRESSES.
    """
    if (process_id is None) != (addresses is None):
        raise typer.BadParameter("--process-id and --addresses go together")
    hosts = [a.strip() for a in addresses.split(";") if a.strip()] if addresses else None
    if hosts is not None and process_id is not None and process_id >= len(hosts):
        raise typer.BadParameter(f"--process-id {process_id} is not an index of --addresses")
    from riffle.dataflows.runner import run_dataflow

    settings = get_settings()
    if hosts is None:
        with clear_errors():
            identity = cluster_identity(
                settings.cluster_size,
                settings.cluster_addresses,
                settings.pod_name or socket.gethostname(),
            )
        if identity is not None:
            process_id, hosts = identity.process_id, identity.addresses
    overrides: dict[str, object] = {}
    if recovery_dir is not None:
        overrides["recovery_dir"] = recovery_dir
    if snapshot_seconds is not None:
        overrides["snapshot_seconds"] = snapshot_seconds
    with clear_errors():
        run_dataflow(
            settings.model_copy(update=overrides),
            workers=workers,
            process_id=process_id,
            addresses=hosts,
        )


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
    with clear_errors():
        application = create_app(settings)
    uvicorn.run(
        application, host=host or settings.api_host, port=port or settings.api_port, log_config=None
    )


@app.command()
def notify() -> None:
    """Deliver alert notifications: read riffle.alerts, route, group, send (docs/alerts.md)."""
    from riffle.dataflows.notifier.run import run_notifier

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with clear_errors():
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
    with clear_errors():
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


@app.command()
def up(
    rate: Annotated[float, typer.Option(min=0.001, help="Demo events per second.")] = 200.0,
) -> None:
    """Start the whole system locally (broker, Redis if needed, flow, API, demo traffic)."""
    from riffle.stack import up as run_stack

    with clear_errors():
        code = run_stack(get_settings(), rate=rate, echo=typer.echo)
    raise typer.Exit(code)


@app.command()
def reset() -> None:
    """Forget the local stack: revoke its demo key, delete .riffle/ (what `make clean` runs)."""
    import shutil

    from riffle.config.errors import RiffleError
    from riffle.local_state import revoke_demo_key
    from riffle.stack import DATA_DIR, DEMO_KEY_FILE

    try:
        if revoke_demo_key(get_settings(), DEMO_KEY_FILE):
            typer.echo(f"revoked the demo key of {DEMO_KEY_FILE}")
    except (RiffleError, OSError) as exc:
        typer.echo(f"the demo key could not be revoked ({exc}); deleting it anyway", err=True)
    shutil.rmtree(DATA_DIR, ignore_errors=True)
    typer.echo(f"removed {DATA_DIR}/")
