"""Stage one of the flow, per source partition: decode, check, judge lateness, pre-aggregate.

:class:`PartitionIngest` turns a batch of raw messages into partial aggregates
grouped by aggregation shard ("bucket") plus dead letters, so the keyed window
state downstream is touched once per window and batch rather than once per
event — the lever that makes Bytewax keep up with a plain consumer loop.

Lateness is judged per metric against the partition's clock: an event is late
for a metric when its time is behind the clock minus the metric's lateness.
A metric with ``late: correct`` still takes it for windows within the
correction horizon; otherwise the metric drops it. An event any metric drops
is a ``late`` dead letter (naming those metrics) and counts as late; the
metrics that took it keep it.

With a :class:`~operators.dedup.Deduplicator`, a valid event whose id the
partition has already seen within the horizon counts as ``duplicate`` and
goes no further: no window, no enrichment state, no archive row, no dead letter.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson

from riffle.operators.aggregators import Agg, add, add_item, frozen, new_agg
from riffle.operators.assigners import Sessions
from riffle.operators.dedup import Deduplicator
from riffle.operators.enrich import Enricher
from riffle.operators.envelope import EnvelopeError, check, decode
from riffle.operators.extract import MetricPlan, compile_readers
from riffle.operators.models.entities import EntityExtractor, Observation
from riffle.operators.records import DeadLetter, Dims
from riffle.operators.watermark import PartitionClock

Message = tuple[bytes | None, str | None, int]
"""A raw message: ``(value, tenant header, offset)``."""

SeriesKey = tuple[str, str, Dims]
"""``(tenant, metric, dims)``: a series."""

Partial = tuple[str, str, Dims, int, int, Agg]
"""``(tenant, metric, dims, window_start, window_end, aggregate)``: part of one window."""

EventCheck = Callable[[dict[str, Any]], None]
"""An extra check of a decoded, envelope-checked event (the schema registry's);
raises :class:`EnvelopeError` to route the event to the dead letters."""

Decoder = Callable[[bytes], Any]
"""Bytes to an event: JSON (:func:`operators.envelope.decode`) or an import's row
mapping; raises :class:`EnvelopeError` to route the message to the dead letters."""

Accepted = tuple[str, int, str, str, bytes, int]
"""A valid event as the archive keeps it: ``(tenant, ts, event_id, type, bytes, offset)``;
the bytes are the event as it entered, before enrichment."""


def bucket_of(tenant: str, metric: str, dims: Dims, buckets: int) -> int:
    """The aggregation shard of a series: stable across processes (not ``hash()``).

    Callers pass ``dims=()`` for capped metrics, whose windows are ranked whole.
    """
    key = f"{tenant}\x1f{metric}\x1f{dims!r}".encode()
    return zlib.crc32(key) % buckets


@dataclass(slots=True)
class BatchResult:
    """What one batch produced; ``seen == ok + len(dead) + duplicate`` and
    ``late <= len(dead)``."""

    partials: dict[int, list[Partial]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    seen: int = 0
    ok: int = 0
    late: int = 0
    duplicate: int = 0
    """Later copies of an event id already seen within the de-duplication horizon."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Late events each metric dropped."""
    corrected: dict[str, int] = field(default_factory=dict)
    """Late events each metric folded into a correction."""
    observations: list[Observation] = field(default_factory=list)
    """What the events told the spec's predictions (with an ``observer``)."""
    unobserved_late: int = 0
    """Events too late for the predictions (behind the clock less the observer's lateness)."""
    accepted: list[Accepted] = field(default_factory=list)
    """Every valid event, late or not (with ``keep_accepted``): what the raw archive keeps."""


class PartitionIngest:
    """Stage one for one source partition; its recoverable state is the clock, the
    enricher's and the de-duplicator's (each snapshotted by its owner)."""

    __slots__ = (
        "_series_cache",
        "buckets",
        "clock",
        "decode",
        "dedup",
        "default_tenant",
        "enricher",
        "keep_accepted",
        "observer",
        "plans",
        "readers",
        "source",
        "validate",
    )

    def __init__(
        self,
        plans: Mapping[str, Sequence[MetricPlan]],
        *,
        source: str,
        default_tenant: str,
        buckets: int,
        clock: PartitionClock,
        enricher: Enricher | None = None,
        validate: EventCheck | None = None,
        observer: EntityExtractor | None = None,
        decode: Decoder = decode,
        keep_accepted: bool = False,
        dedup: Deduplicator | None = None,
    ) -> None:
        self.plans = plans
        self.dedup = dedup
        self.decode = decode
        self.keep_accepted = keep_accepted
        self.observer = observer
        self.validate = validate
        self.source = source
        self.default_tenant = default_tenant
        self.buckets = buckets
        self.clock = clock
        self.enricher = enricher
        self.readers = compile_readers(plans)
        self._series_cache: dict[tuple[str, int, tuple[str, ...]], tuple[int, Dims]] = {}

    def process(self, messages: Sequence[Message], now: int) -> BatchResult:
        """Handle a batch in offset order; ``now`` is the wall clock in epoch ms."""
        result = BatchResult(seen=len(messages))
        # (tenant, metric index, dimension values, window start) -> [end, aggregate]
        windows: dict[tuple[str, int, tuple[str, ...], int], tuple[int, Agg]] = {}
        sessions: dict[tuple[str, int, tuple[str, ...]], list[tuple[int, Any]]] = {}
        plans_by_index: dict[int, MetricPlan] = {}
        clock = self.clock
        readers = self.readers
        enricher = self.enricher
        decoder = self.decode
        mapped = decoder is not decode  # the bytes are not the event itself
        accepted = result.accepted if self.keep_accepted else None
        validate = self.validate
        dedup = self.dedup
        observer = self.observer
        default_tenant = self.default_tenant
        for raw, tenant_header, offset in messages:
            tenant = tenant_header or default_tenant
            event_type: str | None = None
            ts: int | None = None
            try:
                if raw is None:
                    raise EnvelopeError("parse", "$", "empty message (no value)")
                event = decoder(raw)
                ts = check(event)
                event_type = event["type"]
                entered = orjson.dumps(event) if mapped and accepted is not None else raw
                read = readers.get(event_type)
                if read is None:
                    raise EnvelopeError(
                        "unknown_type", "type", f"unknown event type {event_type!r}"
                    )
                if validate is not None:  # the producer's event, before enrichment
                    validate(event)
                claim = None
                if dedup is not None:
                    claim = dedup.claim(tenant, event["event_id"], ts)
                    if claim is None:
                        result.duplicate += 1
                        continue
                if enricher is not None:
                    enricher.enrich(event, ts, tenant, now, self.source)
                contributions = read(event)
            except EnvelopeError as exc:
                result.dead.append(self._dead(exc, raw or b"", offset, tenant, now, event_type, ts))
                continue
            if claim is not None and dedup is not None:
                dedup.keep(claim)  # judged first and not a dead letter: remember it
            if accepted is not None:
                accepted.append((tenant, ts, event["event_id"], event_type, entered, offset))
            now_clock = clock.value
            if observer is not None:
                if ts >= now_clock - observer.lateness_ms:
                    result.observations.extend(observer.observe(event, tenant, ts, offset))
                else:
                    result.unobserved_late += 1
            dropped_by: list[str] | None = None
            behind = 0
            for plan, values, value in contributions:
                watermark = now_clock - plan.lateness_ms
                late = ts < watermark
                assigner = plan.assigner
                size = assigner.tumbling_ms
                if size:
                    start = ts - ts % size
                    horizon = plan.horizon_ms
                    if late and (not horizon or start + size + horizon <= watermark):
                        if dropped_by is None:
                            dropped_by = []
                        dropped_by.append(plan.name)
                        behind = max(behind, watermark - ts)
                        continue
                    key = (tenant, plan.index, values, start)
                    slot = windows.get(key)
                    if slot is None:
                        slot = windows[key] = (start + size, new_agg(plan.sketch))
                        plans_by_index[plan.index] = plan
                    agg = slot[1]
                    if plan.sketch is None:
                        agg[0] += 1.0
                        agg[1] += value
                        if value < agg[2]:
                            agg[2] = value
                        if value > agg[3]:
                            agg[3] = value
                    else:
                        add_item(agg, value)
                elif assigner.merges:
                    if late:
                        if dropped_by is None:
                            dropped_by = []
                        dropped_by.append(plan.name)
                        behind = max(behind, watermark - ts)
                        continue
                    plans_by_index[plan.index] = plan
                    sessions.setdefault((tenant, plan.index, values), []).append((ts, value))
                    continue
                else:
                    took = False
                    for start, end in assigner.spans(ts, tenant):
                        if late and (not plan.horizon_ms or end + plan.horizon_ms <= watermark):
                            continue
                        took = True
                        key = (tenant, plan.index, values, start)
                        slot = windows.get(key)
                        if slot is None:
                            slot = windows[key] = (end, new_agg(plan.sketch))
                            plans_by_index[plan.index] = plan
                        if plan.sketch is None:
                            add(slot[1], value)
                        else:
                            add_item(slot[1], value)
                    if not took:
                        if dropped_by is None:
                            dropped_by = []
                        dropped_by.append(plan.name)
                        behind = max(behind, watermark - ts)
                        continue
                if late:
                    result.corrected[plan.name] = result.corrected.get(plan.name, 0) + 1
            clock.observe(ts)
            if dropped_by:
                for name in dropped_by:
                    result.dropped[name] = result.dropped.get(name, 0) + 1
                result.late += 1
                reason = f"{behind} ms behind the watermark of {', '.join(dropped_by)}"
                result.dead.append(
                    self._dead(
                        EnvelopeError("late", "ts", reason),
                        raw,
                        offset,
                        tenant,
                        now,
                        event_type,
                        ts,
                        lateness_ms=behind,
                    )
                )
            else:
                result.ok += 1
        if messages:
            clock.arrived(now)
        partials = result.partials
        for (tenant, index, values, start), (end, agg) in windows.items():
            plan = plans_by_index[index]
            bucket, dims = self._series(tenant, plan, values)
            partials.setdefault(bucket, []).append(
                (tenant, plan.name, dims, start, end, frozen(agg))
            )
        for (tenant, index, values), points in sessions.items():
            plan = plans_by_index[index]
            bucket, dims = self._series(tenant, plan, values)
            target = partials.setdefault(bucket, [])
            fold = add if plan.sketch is None else add_item
            assert isinstance(plan.assigner, Sessions)
            for start, end, agg in plan.assigner.group(points, partial(new_agg, plan.sketch), fold):
                target.append((tenant, plan.name, dims, start, end, frozen(agg)))
        return result

    def _series(self, tenant: str, plan: MetricPlan, values: tuple[str, ...]) -> tuple[int, Dims]:
        """The shard and named dimensions of a series (cached: series repeat across batches)."""
        key = (tenant, plan.index, values)
        found = self._series_cache.get(key)
        if found is None:
            if len(self._series_cache) > 100_000:
                self._series_cache.clear()
            dims = plan.named(values)
            shard_dims = () if plan.max_values else dims
            found = (bucket_of(tenant, plan.name, shard_dims, self.buckets), dims)
            self._series_cache[key] = found
        return found

    def _dead(
        self,
        exc: EnvelopeError,
        raw: bytes,
        offset: int,
        tenant: str,
        now: int,
        event_type: str | None,
        ts: int | None,
        lateness_ms: int | None = None,
    ) -> DeadLetter:
        return DeadLetter(
            failure_type=exc.failure_type,
            reason=exc.reason,
            path=exc.path,
            raw=raw,
            source=f"{self.source}@{offset}",
            tenant=tenant,
            received_at=now,
            event_type=event_type,
            event_ts=ts,
            lateness_ms=lateness_ms,
            errors=exc.issues,
            event_id=_event_id(raw),
        )


def _event_id(raw: bytes) -> str | None:
    """The event id of a dead letter's bytes, when they hold one (best effort)."""
    marker = raw.find(b'"event_id"')
    if marker < 0:
        return None
    try:
        event = decode(raw)
    except EnvelopeError:
        return None
    value = event.get("event_id") if type(event) is dict else None
    return value if type(value) is str else None
