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
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from riffle.operators.aggregators import Agg, add, add_item, frozen, new_agg
from riffle.operators.enrich import Enricher
from riffle.operators.envelope import EnvelopeError, check, decode
from riffle.operators.extract import MetricPlan
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
    """What one batch produced; ``seen == ok + len(dead)`` and ``late <= len(dead)``."""

    partials: dict[int, list[Partial]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    seen: int = 0
    ok: int = 0
    late: int = 0
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
    """Stage one for one source partition; its recoverable state is the clock."""

    __slots__ = (
        "_bucket_cache",
        "_capped",
        "buckets",
        "clock",
        "decode",
        "default_tenant",
        "enricher",
        "keep_accepted",
        "observer",
        "plans",
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
    ) -> None:
        self.plans = plans
        self.decode = decode
        self.keep_accepted = keep_accepted
        self.observer = observer
        self.validate = validate
        self.source = source
        self.default_tenant = default_tenant
        self.buckets = buckets
        self.clock = clock
        self.enricher = enricher
        self._bucket_cache: dict[SeriesKey, int] = {}
        self._capped = frozenset(p.name for ps in plans.values() for p in ps if p.max_values)

    def process(self, messages: Sequence[Message], now: int) -> BatchResult:
        """Handle a batch in offset order; ``now`` is the wall clock in epoch ms."""
        result = BatchResult(seen=len(messages))
        windows: dict[tuple[str, str, Dims, int], tuple[int, Agg]] = {}
        sessions: dict[SeriesKey, list[tuple[int, Any]]] = {}
        session_plans: dict[str, MetricPlan] = {}
        clock = self.clock
        plans_for = self.plans
        enricher = self.enricher
        decoder = self.decode
        mapped = decoder is not decode  # the bytes are not the event itself
        accepted = result.accepted if self.keep_accepted else None
        for raw, tenant_header, offset in messages:
            tenant = tenant_header or self.default_tenant
            event_type: str | None = None
            ts: int | None = None
            try:
                if raw is None:
                    raise EnvelopeError("parse", "$", "empty message (no value)")
                event = decoder(raw)
                ts = check(event)
                event_type = event["type"]
                entered = orjson.dumps(event) if mapped and accepted is not None else raw
                plans = plans_for.get(event["type"])
                if plans is None:
                    raise EnvelopeError(
                        "unknown_type", "type", f"unknown event type {event_type!r}"
                    )
                if self.validate is not None:  # the producer's event, before enrichment
                    self.validate(event)
                if enricher is not None:
                    enricher.enrich(event, ts, tenant, now, self.source)
                contributions = [(plan, plan.read(event)) for plan in plans]
            except EnvelopeError as exc:
                result.dead.append(self._dead(exc, raw or b"", offset, tenant, now, event_type, ts))
                continue
            if accepted is not None:
                accepted.append((tenant, ts, event["event_id"], event_type, entered, offset))
            now_clock = clock.value
            observer = self.observer
            if observer is not None:
                if ts >= now_clock - observer.lateness_ms:
                    result.observations.extend(observer.observe(event, tenant, ts, offset))
                else:
                    result.unobserved_late += 1
            dropped_by: list[str] = []
            behind = 0
            for plan, read in contributions:
                if read is None:
                    continue
                dims, value = read
                watermark = now_clock - plan.lateness_ms
                late = ts < watermark
                if plan.session:
                    if late:
                        dropped_by.append(plan.name)
                        behind = max(behind, watermark - ts)
                        continue
                    session_plans[plan.name] = plan
                    sessions.setdefault((tenant, plan.name, dims), []).append((ts, value))
                    continue
                took = False
                for start, end in plan.spans(ts, tenant):
                    if late and (not plan.horizon_ms or end + plan.horizon_ms <= watermark):
                        continue
                    took = True
                    key = (tenant, plan.name, dims, start)
                    slot = windows.get(key)
                    if slot is None:
                        slot = windows[key] = (end, new_agg(plan.sketch))
                    if plan.sketch is None:
                        add(slot[1], value)
                    else:
                        add_item(slot[1], value)
                if not late:
                    continue
                if took:
                    result.corrected[plan.name] = result.corrected.get(plan.name, 0) + 1
                else:
                    dropped_by.append(plan.name)
                    behind = max(behind, watermark - ts)
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
        for (tenant, metric, dims, start), (end, agg) in windows.items():
            bucket = self._bucket(tenant, metric, dims)
            partials.setdefault(bucket, []).append((tenant, metric, dims, start, end, frozen(agg)))
        for (tenant, metric, dims), points in sessions.items():
            bucket = self._bucket(tenant, metric, dims)
            target = partials.setdefault(bucket, [])
            for start, end, agg in _sessions(points, session_plans[metric]):
                target.append((tenant, metric, dims, start, end, frozen(agg)))
        return result

    def _bucket(self, tenant: str, metric: str, dims: Dims) -> int:
        key = (tenant, metric, dims)
        bucket = self._bucket_cache.get(key)
        if bucket is None:
            if len(self._bucket_cache) > 100_000:
                self._bucket_cache.clear()
            shard_dims = () if metric in self._capped else dims
            bucket = self._bucket_cache[key] = bucket_of(tenant, metric, shard_dims, self.buckets)
        return bucket

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


def _sessions(points: list[tuple[int, Any]], plan: MetricPlan) -> list[tuple[int, int, Agg]]:
    """Group one series' event times into sessions: ``(first, last + gap, aggregate)``."""
    points.sort(key=lambda point: point[0])
    gap, fold = plan.window_ms, add if plan.sketch is None else add_item
    out: list[tuple[int, int, Agg]] = []
    start = last = points[0][0]
    agg = new_agg(plan.sketch)
    for ts, value in points:
        if ts - last >= gap:
            out.append((start, last + gap, agg))
            start, agg = ts, new_agg(plan.sketch)
        last = ts
        fold(agg, value)
    out.append((start, last + gap, agg))
    return out


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
