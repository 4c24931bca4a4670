"""Running the metrics dataflow against Kafka, Redis and the warehouse."""

from __future__ import annotations

import structlog
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.run import cli_main
from prometheus_client import start_http_server

from config.settings import Settings
from config.spec import load_spec
from dataflows.deadletter_sink import DeadLetterFanoutSink
from dataflows.metrics import FlowOutputs, build_flow
from dataflows.outputs import RedisWindowsSink, WarehouseSink
from dataflows.telemetry import FlowTelemetry
from sinks.warehouse import DuckDBWarehouse
from sources.kafka import KafkaPollSource, PartitionPoll, list_partitions, partition_key
from sources.pubsub import PubSubSource
from sources.pubsub import partition_key as pubsub_partition
from sources.topics import ensure_topics

log = structlog.get_logger(__name__)


def kafka_flow(settings: Settings, telemetry: FlowTelemetry) -> Dataflow:
    """The metrics flow wired to the services named in ``settings``."""
    spec = load_spec(settings.spec)
    ensure_topics(
        settings.kafka_servers,
        [settings.events_topic, settings.deadletter_topic],
        settings.topic_partitions,
    )
    partitions = [
        partition_key(settings.events_topic, p)
        for p in list_partitions(settings.kafka_servers, settings.events_topic)
    ]
    DuckDBWarehouse(settings.duckdb_path).init()
    source: Source[tuple[str, PartitionPoll]] = KafkaPollSource(
        settings.kafka_servers,
        settings.events_topic,
        batch_size=settings.source_batch_size,
        start_from=settings.start_from,
        heartbeat_ms=int(settings.partial_interval_seconds * 1000),
    )
    if settings.source == "pubsub":
        source = PubSubSource(
            settings.pubsub_project,
            settings.pubsub_subscription,
            batch_size=settings.source_batch_size,
            heartbeat_ms=int(settings.partial_interval_seconds * 1000),
        )
        partitions = [pubsub_partition(settings.pubsub_subscription)]
    outputs = FlowOutputs(
        windows=RedisWindowsSink(
            settings.redis_url, settings.redis_prefix, int(spec.retention.hot.total_seconds())
        ),
        finals=WarehouseSink(settings.duckdb_path),
        dead_letters=DeadLetterFanoutSink(
            settings.kafka_servers, settings.deadletter_topic, settings.duckdb_path
        ),
    )
    return build_flow(
        spec, settings, source=source, partitions=partitions, outputs=outputs, telemetry=telemetry
    )


def run_dataflow(
    settings: Settings,
    *,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
) -> None:
    """Run the flow in this process until it is stopped.

    With ``addresses`` this process is ``process_id`` of a cluster; each process
    serves Prometheus metrics on ``metrics_port + process_id``.
    """
    telemetry = FlowTelemetry()
    if settings.metrics_port:
        port = settings.metrics_port + (process_id or 0)
        start_http_server(port, addr=settings.api_host)
        log.info("dataflow_metrics", url=f"http://{settings.api_host}:{port}/metrics")
    flow = kafka_flow(settings, telemetry)
    log.info(
        "dataflow_start",
        topic=settings.events_topic,
        workers=workers,
        process_id=process_id,
        spec=str(settings.spec),
    )
    cli_main(  # type: ignore[no-untyped-call]
        flow, workers_per_process=workers, process_id=process_id, addresses=addresses
    )
