"""Bytewax adapters around the plain stream logic of ``operators``.

:class:`IngestLogic` runs per source partition (key ``topic/partition``);
:class:`BucketLogic` per aggregation shard (key ``b07``). Both keep compact
snapshots — plain tuples and dicts of numbers — because Bytewax deep-copies
the snapshot of every touched key at every epoch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bytewax.operators import StatefulBatchLogic

from riffle.dataflows.telemetry import FlowTelemetry
from riffle.operators.dedup import Deduplicator, DedupSnapshot
from riffle.operators.enrich import Enricher, EnrichmentPlan
from riffle.operators.envelope import decode
from riffle.operators.extract import MetricPlan
from riffle.operators.ingest import (
    Accepted,
    Decoder,
    EventCheck,
    Partial,
    PartitionIngest,
)
from riffle.operators.models.entities import EntityExtractor, Observation
from riffle.operators.records import DeadLetter, WindowResult
from riffle.operators.watermark import NEVER, PartitionClock
from riffle.operators.windows import BucketSnapshot, BucketWindows, WindowRule
from riffle.sources.kafka import PartitionPoll


def now_ms() -> int:
    """Wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def _at(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)


def source_name(partition: str) -> str:
    """Where a partition's bytes come from: ``kafka:topic/0``, or a key that names its
    kind itself (``pubsub:subscription``, ``import:…``); topic names have no colon."""
    return partition if ":" in partition else f"kafka:{partition}"


def _slot(logic: object) -> str:
    """A name for one key's logic in this process, for per-key telemetry bookkeeping.

    The builders get no key, and a resumed shard learns its key only from its
    first update: the object's identity is stable for as long as the key lives.
    """
    return f"{id(logic):x}"


def bucket_key(bucket: int) -> str:
    """The key of an aggregation shard."""
    return f"b{bucket:03d}"


@dataclass(frozen=True, slots=True)
class BucketUpdate:
    """One partition's news for one shard: its clock and partial aggregates."""

    bucket: str
    partition: str
    clock: int
    partials: list[Partial]


@dataclass(frozen=True, slots=True)
class EntityUpdate:
    """One partition's news for the prediction stage: its clock and observations."""

    partition: str
    clock: int
    observations: list[Observation]
    late: int = 0
    """Events of this batch too late for the predictions."""


@dataclass(frozen=True, slots=True)
class ArchiveRows:
    """The valid events of one poll, for the raw archive: ``first``..``last`` is the
    poll's whole offset range in ``source``, so every valid event in it is in ``rows``."""

    source: str
    first: int
    last: int
    rows: list[Accepted]


IngestOut = BucketUpdate | list[DeadLetter] | EntityUpdate | ArchiveRows
ClockSnapshot = tuple[str, int, int, bytes | None, DedupSnapshot | None]
"""``(partition, max_ts, clock, enricher state, de-duplicator state)``; whether the
reader is caught up is not state: after a restart the source says so again."""


class IngestLogic(StatefulBatchLogic[PartitionPoll, IngestOut, ClockSnapshot]):
    """Stage one of one source partition; see :mod:`operators.ingest`.

    Emits a :class:`BucketUpdate` for every shard that received partials, and
    for every shard whenever the partition's reported clock moved, so each
    shard always knows every partition's clock. Checks idleness
    every ``tick_ms`` of wall-clock time. With ``archive``, also an
    :class:`ArchiveRows` per poll that delivered messages. With
    ``dedup_horizon_ms``, later copies of an event id within that much event
    time count as duplicates and are dropped (:mod:`operators.dedup`).
    """

    def __init__(
        self,
        plans: Mapping[str, Sequence[MetricPlan]],
        *,
        default_tenant: str,
        buckets: int,
        lateness_ms: int,
        idle_ms: int,
        tick_ms: int,
        telemetry: FlowTelemetry,
        resume: ClockSnapshot | None,
        enrichment: EnrichmentPlan | None = None,
        validate: EventCheck | None = None,
        observer: EntityExtractor | None = None,
        decoder: Decoder = decode,
        archive: bool = False,
        dedup_horizon_ms: int = 0,
    ) -> None:
        clock = PartitionClock(idle_ms=idle_ms, last_arrival=now_ms())
        self.partition = ""
        enricher_state = dedup_state = None
        if resume is not None:
            self.partition, clock.max_ts, clock.value, enricher_state, dedup_state = resume
        enricher = None
        if enrichment is not None:
            enricher = Enricher(enrichment).restore(enricher_state)
        self.ingest = PartitionIngest(
            plans,
            source=source_name(self.partition),
            default_tenant=default_tenant,
            buckets=buckets,
            clock=clock,
            enricher=enricher,
            validate=validate,
            observer=observer,
            decode=decoder,
            keep_accepted=archive,
            dedup=Deduplicator(dedup_horizon_ms).restore(dedup_state) if dedup_horizon_ms else None,
        )
        self.bucket_keys = [bucket_key(b) for b in range(buckets)]
        self.lateness_ms = lateness_ms
        self.tick_ms = tick_ms
        self.telemetry = telemetry
        self._reported = NEVER if resume is None else clock.reported
        self._next_tick = now_ms() + tick_ms

    def on_batch(self, values: list[PartitionPoll]) -> tuple[list[IngestOut], bool]:
        now = now_ms()
        wm = self.ingest.clock
        out: list[IngestOut] = []
        partials: dict[int, list[Partial]] = {}
        observations: list[Observation] = []
        late = 0
        for poll in values:
            if not self.partition:
                self.partition = poll.partition
                self.ingest.source = source_name(poll.partition)
            wm.caught_up = poll.at_end
            self.telemetry.source_lag.labels(poll.partition).set(poll.lag)
            if not poll.messages:
                continue
            if poll.origin is not None:
                self.ingest.source = poll.origin
            result = self.ingest.process(poll.messages, now)
            self.telemetry.batch(result)
            if self.ingest.keep_accepted:
                first, last = poll.messages[0][2], poll.messages[-1][2]
                out.append(ArchiveRows(self.ingest.source, first, last, result.accepted))
            if result.dead:
                self.telemetry.dead(result.dead)
                out.append(result.dead)
            for bucket, items in result.partials.items():
                partials.setdefault(bucket, []).extend(items)
            observations.extend(result.observations)
            late += result.unobserved_late
        self._updates(out, partials, now, observations, late)
        return out, self.RETAIN

    def on_notify(self) -> tuple[list[IngestOut], bool]:
        now = now_ms()
        self._next_tick = now + self.tick_ms
        self.ingest.clock.idle_advance(now)
        out: list[IngestOut] = []
        self._updates(out, {}, now)
        return out, self.RETAIN

    def notify_at(self) -> datetime:
        return _at(self._next_tick)

    def snapshot(self) -> ClockSnapshot:
        started = time.perf_counter()
        clock, enricher, dedup = self.ingest.clock, self.ingest.enricher, self.ingest.dedup
        snap = (
            self.partition,
            clock.max_ts,
            clock.value,
            None if enricher is None else enricher.snapshot(),
            None if dedup is None else dedup.snapshot(),
        )
        self.telemetry.snapshotted("ingest", _slot(self), snap, time.perf_counter() - started)
        return snap

    def _updates(
        self,
        out: list[IngestOut],
        partials: dict[int, list[Partial]],
        now: int,
        observations: list[Observation] | None = None,
        late: int = 0,
    ) -> None:
        reported = self.ingest.clock.reported
        moved = reported != self._reported
        if self.ingest.observer is not None and (observations or moved or late):
            out.append(EntityUpdate(self.partition, reported, observations or [], late))
        self._reported = reported
        if moved and reported != NEVER:
            self.telemetry.watermark_lag.labels(self.partition).set(
                max(0.0, (now - reported + self.lateness_ms) / 1000)
            )
        for index, key in enumerate(self.bucket_keys):
            items = partials.get(index)
            if items or moved:
                out.append(BucketUpdate(key, self.partition, reported, items or []))


class BucketLogic(StatefulBatchLogic[BucketUpdate, WindowResult, BucketSnapshot]):
    """Stage two of one shard: window state, finals on close, partials every interval."""

    def __init__(
        self,
        rules: Mapping[str, WindowRule],
        partitions: Sequence[str],
        *,
        partial_ms: int,
        telemetry: FlowTelemetry,
        resume: BucketSnapshot | None,
    ) -> None:
        self.windows = BucketWindows(rules, partitions).restore(resume)
        self.partial_ms = partial_ms
        self.telemetry = telemetry
        self._next_partials = now_ms() + partial_ms
        self._seen_corrections = self.windows.corrections
        self._seen_dropped = self.windows.dropped_after_close
        self._seen_folded = dict(self.windows.folded)

    def on_batch(self, values: list[BucketUpdate]) -> tuple[list[WindowResult], bool]:
        now = now_ms()
        out: list[WindowResult] = []
        for update in values:
            out.extend(self.windows.apply(update.partition, update.clock, update.partials, now))
        self._account(out)
        return out, self.RETAIN

    def on_notify(self) -> tuple[list[WindowResult], bool]:
        now = now_ms()
        self._next_partials = now + self.partial_ms
        out = self.windows.partials(now)
        self._account(out)
        return out, self.RETAIN

    def on_eof(self) -> tuple[list[WindowResult], bool]:
        # Only bounded inputs (files, tests) end; their windows are complete.
        out = self.windows.close_all(now_ms())
        self._account(out)
        return out, self.RETAIN

    def notify_at(self) -> datetime:
        return _at(self._next_partials)

    def snapshot(self) -> BucketSnapshot:
        started = time.perf_counter()
        snap = self.windows.snapshot()
        elapsed = time.perf_counter() - started
        self.telemetry.snapshotted("windows", _slot(self), snap, elapsed)
        self.telemetry.windows_held(_slot(self), len(snap.open), len(snap.closed))
        return snap

    def _account(self, out: list[WindowResult]) -> None:
        self.telemetry.emitted(out)
        windows = self.windows
        if windows.corrections != self._seen_corrections:
            self.telemetry.corrections.inc(windows.corrections - self._seen_corrections)
            self._seen_corrections = windows.corrections
        if windows.dropped_after_close != self._seen_dropped:
            self.telemetry.dropped_after_close.inc(windows.dropped_after_close - self._seen_dropped)
            self._seen_dropped = windows.dropped_after_close
        for metric, folded in windows.folded.items():
            seen = self._seen_folded.get(metric, 0)
            if folded != seen:
                self.telemetry.capped_series.labels(metric).inc(folded - seen)
                self._seen_folded[metric] = folded
