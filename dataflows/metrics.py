"""The metrics dataflow: events in, windowed metrics and dead letters out.

```
source (one item per partition poll)
  └─ ingest      stateful per partition: decode, check, de-duplicate, lateness, pre-aggregate
       ├─ dead letters ───────────────────────────────▶ dead-letter sink
       └─ bucket updates ─▶ windows  stateful per shard: merge, close, partials
                                 ├─ every emission ───▶ hot store (Redis)
                                 └─ finals ───────────▶ warehouse
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink

from riffle.config.registry import load_schemas
from riffle.config.settings import Settings
from riffle.config.spec import OTHER, PipelineSpec
from riffle.dataflows.alert_logic import ClockReading, RuleLog
from riffle.dataflows.alerts import alert_stage
from riffle.dataflows.logic import (
    ArchiveRows,
    BucketLogic,
    BucketUpdate,
    IngestLogic,
    IngestOut,
    bucket_key,
)
from riffle.dataflows.models import model_stage
from riffle.dataflows.outputs import FlowSink, Output, emit
from riffle.dataflows.predictions import prediction_stage
from riffle.dataflows.telemetry import FlowTelemetry
from riffle.operators.alerts.transitions import AlertTransition
from riffle.operators.assigners import assigner_for
from riffle.operators.enrich import compile_enrichment
from riffle.operators.envelope import decode
from riffle.operators.extract import compile_plans
from riffle.operators.ingest import Decoder
from riffle.operators.models.entities import EntityExtractor, PredictionOut
from riffle.operators.models.series import ModelRecord
from riffle.operators.records import DeadLetter, WindowResult
from riffle.operators.schemas import EventValidator
from riffle.operators.sketches import sketch_for
from riffle.operators.windows import WindowRule
from riffle.sources.kafka import PartitionPoll


@dataclass(frozen=True)
class FlowOutputs:
    """Where the flow's results go."""

    windows: Output[WindowResult]
    """Every emission, partial and final (the hot store)."""
    finals: Output[WindowResult] | None
    """Final windows only (the warehouse); ``None`` to skip."""
    dead_letters: Output[DeadLetter]
    models: Output[ModelRecord] | None = None
    """Anomaly scores and forecasts of modelled metrics; ``None`` to skip the model stage."""
    alerts: Output[AlertTransition] | None = None
    """Alert transitions of the spec's ``alerts:`` rules; ``None`` to skip the alert stage."""
    predictions: Output[PredictionOut] | None = None
    """Per-entity predictions of the spec's ``predictions:``; ``None`` to skip that stage."""
    alert_rules: RuleLog | None = None
    """Where tenant alert rules made through the API are read from; ``None``: spec only."""
    archive: Sink[tuple[str, ArchiveRows]] | None = None
    """Every valid event, keyed by source partition (the raw archive); ``None`` to skip."""

    def place(self, process_id: int) -> FlowOutputs:
        """Make every flow sink here the sinks of process ``process_id``; returns ``self``."""
        for sink in (self.windows, self.finals, self.dead_letters, self.models, self.alerts,
                     self.predictions):  # fmt: skip
            if isinstance(sink, FlowSink):
                sink.place(process_id)
        return self


def build_flow(
    spec: PipelineSpec,
    settings: Settings,
    *,
    source: Source[tuple[str, PartitionPoll]],
    partitions: Sequence[str],
    outputs: FlowOutputs,
    telemetry: FlowTelemetry,
    flow_id: str = "riffle_metrics",
    decoder: Decoder = decode,
) -> Dataflow:
    """Build the metrics dataflow.

    ``source`` emits ``(partition_key, PartitionPoll)`` items and
    ``partitions`` lists every partition key it can emit: a shard's watermark
    waits for each of them, so a window closes only once every partition has
    moved past it (or is caught up and idle). ``decoder`` turns a message's
    bytes into an event (an import maps rows with it).
    """
    enrichment = compile_enrichment(spec, ip_hash_key=settings.ip_hash_key.get_secret_value())
    validate = EventValidator(load_schemas(settings.schemas_dir)).check
    lateness_ms = int(settings.lateness_seconds * 1000)
    plans = compile_plans(spec, default_lateness_ms=lateness_ms)
    rules = window_rules(spec, default_lateness_ms=lateness_ms)
    idle_ms = int(settings.idle_seconds * 1000)
    partial_ms = int(settings.partial_interval_seconds * 1000)
    parts = list(partitions)
    predict = outputs.predictions is not None and bool(spec.predictions)
    observer = EntityExtractor(spec.predictions, lateness_ms) if predict else None

    flow = Dataflow(flow_id)
    polls = op.input("source", flow, source)
    ingested = op.stateful_batch(
        "ingest",
        polls,
        lambda resume: IngestLogic(
            plans,
            default_tenant=settings.default_tenant,
            buckets=settings.buckets,
            lateness_ms=lateness_ms,
            idle_ms=idle_ms,
            tick_ms=partial_ms,
            telemetry=telemetry,
            resume=resume,
            enrichment=enrichment,
            validate=validate,
            observer=observer,
            decoder=decoder,
            archive=outputs.archive is not None,
            dedup_horizon_ms=spec.dedup.horizon_ms,
        ),
    )
    if outputs.archive is not None:
        archived = op.branch("archive_rows", ingested, lambda kv: isinstance(kv[1], ArchiveRows))
        rows = cast(Stream[tuple[str, ArchiveRows]], archived.trues)
        op.output("archive_sink", rows, outputs.archive)
        ingested = archived.falses
    items = op.key_rm("drop_partition_key", ingested)
    if predict and outputs.predictions is not None:
        items = prediction_stage(
            items, spec, partitions=parts, lateness_ms=lateness_ms, sink=outputs.predictions
        )
    routed = op.branch("route", items, _is_update)
    dead: Stream[DeadLetter] = op.flat_map("dead_letters", routed.falses, _letters)
    emit("dead_letter_sink", dead, outputs.dead_letters)
    updates = op.map("key_by_bucket", routed.trues, _by_bucket)
    results = op.key_rm(
        "drop_bucket_key",
        op.stateful_batch(
            "windows",
            updates,
            lambda resume: BucketLogic(
                rules,
                parts,
                partial_ms=partial_ms,
                telemetry=telemetry,
                resume=resume,
            ),
        ),
    )
    emit("hot_sink", results, outputs.windows)
    if outputs.finals is not None:
        finals = op.filter("finals_only", results, lambda r: r.is_final)
        emit("warehouse_sink", finals, outputs.finals)
    scores = None
    if outputs.models is not None:
        scores = model_stage(results, spec, shards=settings.buckets, sink=outputs.models)
    if outputs.alerts is not None:
        # Every partition's clock reaches every windows shard; b000's copy is enough.
        first = bucket_key(0)
        clocks = op.filter_map(
            "alert_partition_clocks",
            updates,
            lambda u: ClockReading(u[1].partition, u[1].clock) if u[0] == first else None,
        )
        alert_stage(
            results,
            spec,
            shards=settings.buckets,
            sink=outputs.alerts,
            scores=scores,
            rule_log=outputs.alert_rules,
            clocks=clocks,
            partitions=parts,
            default_lateness_ms=lateness_ms,
            tick_ms=partial_ms,
        )
    return flow


def window_rules(spec: PipelineSpec, *, default_lateness_ms: int) -> dict[str, WindowRule]:
    """How each metric's windows behave in the windows stage."""
    rules = {}
    for metric in spec.metrics:
        lateness = metric.lateness
        rules[metric.name] = WindowRule(
            aggregation=metric.aggregation,
            lateness_ms=default_lateness_ms
            if lateness is None
            else int(lateness.total_seconds() * 1000),
            horizon_ms=int(metric.late_horizon.total_seconds() * 1000)
            if metric.late == "correct"
            else 0,
            session=assigner_for(metric, spec).merges,
            sketch=sketch_for(metric),
            max_values=metric.max_values or 0,
            other=tuple((name, OTHER) for name in sorted(metric.dimensions)),
        )
    return rules


def _is_update(item: IngestOut) -> bool:
    return isinstance(item, BucketUpdate)


def _letters(item: IngestOut) -> list[DeadLetter]:
    assert isinstance(item, list)
    return item


def _by_bucket(item: IngestOut) -> tuple[str, BucketUpdate]:
    assert isinstance(item, BucketUpdate)
    return (item.bucket, item)
