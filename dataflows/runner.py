"""Running the metrics dataflow against Kafka, Redis and the warehouse."""

from __future__ import annotations

import gc
from datetime import timedelta

import structlog
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.run import cli_main

from riffle.config.settings import Settings
from riffle.config.spec import load_spec
from riffle.dataflows.alerts import AlertSink
from riffle.dataflows.archive import ArchiveSink
from riffle.dataflows.deadletter_sink import DeadLetterFanoutSink
from riffle.dataflows.metrics import FlowOutputs, build_flow
from riffle.dataflows.models import ModelStoreSink
from riffle.dataflows.outputs import RedisWindowsSink, WarehouseSink
from riffle.dataflows.predictions import PredictionStoreSink
from riffle.dataflows.recovery import recovery_config
from riffle.dataflows.serving import metrics_port, peer_progress_urls, serve
from riffle.dataflows.telemetry import FlowTelemetry
from riffle.sinks.redis.rules import AlertRuleStore
from riffle.sinks.topics.target import alerts_target, dead_letters_target
from riffle.sinks.warehouse.engines import open_warehouse
from riffle.sources.kafka import KafkaPollSource, PartitionPoll, list_partitions, partition_key
from riffle.sources.pubsub import PubSubSource
from riffle.sources.pubsub import partition_key as pubsub_partition
from riffle.sources.topics import ensure_topics

log = structlog.get_logger(__name__)

GC_THRESHOLDS = (50_000, 20, 100)
"""The flow process's cyclic garbage collector: a young collection every 50,000 net
container allocations (CPython's default is 700), a full one after 2,000 of those."""


def kafka_flow(settings: Settings, telemetry: FlowTelemetry, process_id: int = 0) -> Dataflow:
    """The metrics flow wired to the services named in ``settings``, as process
    ``process_id`` of the flow's cluster."""
    spec = load_spec(settings.spec)
    open_warehouse(settings, spec.retention.warehouse).init()
    source, partitions = _source(settings)
    outputs = FlowOutputs(
        windows=RedisWindowsSink(
            settings.redis_url, settings.redis_prefix, int(spec.retention.hot.total_seconds())
        ),
        finals=WarehouseSink(
            settings,
            retention=spec.retention.warehouse,
            on_error=telemetry.sink_errors.labels("warehouse").inc,
        ),
        dead_letters=DeadLetterFanoutSink(dead_letters_target(settings), settings),
        models=ModelStoreSink(
            settings,
            redis=(
                settings.redis_url,
                settings.redis_prefix,
                int(spec.retention.hot.total_seconds()),
            ),
        ),
        alerts=AlertSink(
            settings,
            redis=(settings.redis_url, settings.redis_prefix),
            topic=alerts_target(settings),
            topic_partitions=settings.topic_partitions,
        )
        if spec.alerts or settings.alert_api_rules
        else None,
        predictions=PredictionStoreSink(
            settings,
            redis=(
                settings.redis_url,
                settings.redis_prefix,
                int(spec.retention.hot.total_seconds()),
            ),
        )
        if spec.predictions
        else None,
        alert_rules=AlertRuleStore.from_url(settings.redis_url, settings.redis_prefix)
        if settings.alert_api_rules
        else None,
        archive=None
        if settings.archive_url is None
        else ArchiveSink(settings.archive_url, partitions),
    ).place(process_id)
    return build_flow(
        spec, settings, source=source, partitions=partitions, outputs=outputs, telemetry=telemetry
    )


def _source(settings: Settings) -> tuple[Source[tuple[str, PartitionPoll]], list[str]]:
    """The flow's input and its partition keys: the Kafka events topic (made if missing,
    with the dead-letter topic), or the Pub/Sub subscription (Kafka is not touched)."""
    heartbeat_ms = int(settings.partial_interval_seconds * 1000)
    if settings.source == "pubsub":
        pubsub = PubSubSource(
            settings.pubsub_project,
            settings.pubsub_subscription,
            batch_size=settings.source_batch_size,
            heartbeat_ms=heartbeat_ms,
        )
        return pubsub, [pubsub_partition(settings.pubsub_subscription)]
    ensure_topics(
        settings.kafka_servers,
        [settings.events_topic, settings.deadletter_topic],
        settings.topic_partitions,
    )
    kafka = KafkaPollSource(
        settings.kafka_servers,
        settings.events_topic,
        batch_size=settings.source_batch_size,
        start_from=settings.start_from,
        heartbeat_ms=heartbeat_ms,
    )
    return kafka, [
        partition_key(settings.events_topic, p)
        for p in list_partitions(settings.kafka_servers, settings.events_topic)
    ]


def collect_garbage_rarely() -> None:
    """Keep CPython's cyclic collector from scanning the flow's state over and over.

    The flow holds a large, slowly changing heap (windows, sketches, entities,
    pending observations, models: about 1 GB over the e2e backlog) and makes
    almost no cyclic garbage (323 objects found over 200k demo events), but
    with the default thresholds every growth of that heap by a quarter started
    a full collection of all of it: 2.1 of 13.5 CPU seconds of a 200k-event
    run, 12 full collections at about 150 ms. Memory is still freed by
    reference counting as before; only reference cycles wait longer.
    Everything alive once the flow is built (modules, the spec, generated
    readers) is frozen out of the collector's scans.
    """
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()


def run_dataflow(
    settings: Settings,
    *,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
) -> None:
    """Run the flow in this process until it is stopped.

    With ``addresses`` this process is ``process_id`` of a cluster; each process
    serves Prometheus metrics and its recovery progress on ``metrics_port +
    process_id`` (``metrics_port`` when ``metrics_port_per_process`` is off: one
    process per host), and asks the others for theirs before it starts (see
    :mod:`dataflows.recovery`).
    """
    telemetry = FlowTelemetry()
    if settings.metrics_port:
        port = metrics_port(settings, process_id or 0)
        serve(settings.api_host, port, settings.recovery_dir)
        log.info("dataflow_metrics", url=f"http://{settings.api_host}:{port}/metrics")
    peers = [] if addresses is None else peer_progress_urls(settings, process_id or 0, addresses)
    flow = kafka_flow(settings, telemetry, process_id or 0)
    log.info(
        "dataflow_start",
        topic=settings.events_topic,
        workers=workers,
        process_id=process_id,
        spec=str(settings.spec),
    )
    collect_garbage_rarely()
    cli_main(  # type: ignore[no-untyped-call]
        flow,
        workers_per_process=workers,
        process_id=process_id,
        addresses=addresses,
        epoch_interval=timedelta(seconds=settings.snapshot_seconds),
        recovery_config=recovery_config(settings, clustered=addresses is not None, peers=peers),
    )
