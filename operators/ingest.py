"""Stage one of the flow, per source partition: decode, check, judge lateness, pre-aggregate.

:class:`PartitionIngest` turns a batch of raw messages into partial aggregates
grouped by aggregation shard ("bucket") plus dead letters, so the keyed window
state downstream is touched once per series and batch rather than once per
event — the lever that makes Bytewax keep up with a plain consumer loop.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from operators.aggregators import Agg, add, new_agg
from operators.envelope import EnvelopeError, check, decode
from operators.extract import MetricPlan
from operators.records import DeadLetter, Dims
from operators.watermark import Watermark

Message = tuple[bytes | None, str | None, int]
"""A raw message: ``(value, tenant header, offset)``."""

SeriesKey = tuple[str, str, Dims]
"""``(tenant, metric, dims)``: a series."""

Partial = tuple[str, str, Dims, int, Agg]
"""``(tenant, metric, dims, window_start, aggregate)``: part of one window."""

EventCheck = Callable[[dict[str, Any]], None]
"""An extra check of a decoded, envelope-checked event (the schema registry's);
raises :class:`EnvelopeError` to route the event to the dead letters."""


def bucket_of(tenant: str, metric: str, dims: Dims, buckets: int) -> int:
    """The aggregation shard of a series: stable across processes (not ``hash()``)."""
    key = f"{tenant}\x1f{metric}\x1f{dims!r}".encode()
    return zlib.crc32(key) % buckets


@dataclass(slots=True)
class BatchResult:
    """What one batch produced; ``seen == ok + dead + late`` always holds."""

    partials: dict[int, list[Partial]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    seen: int = 0
    ok: int = 0
    late: int = 0


class PartitionIngest:
    """Stage one for one source partition; its recoverable state is the watermark."""

    __slots__ = (
        "_bucket_cache",
        "buckets",
        "default_tenant",
        "plans",
        "source",
        "validate",
        "watermark",
    )

    def __init__(
        self,
        plans: Mapping[str, Sequence[MetricPlan]],
        *,
        source: str,
        default_tenant: str,
        buckets: int,
        watermark: Watermark,
        validate: EventCheck | None = None,
    ) -> None:
        self.plans = plans
        self.validate = validate
        self.source = source
        self.default_tenant = default_tenant
        self.buckets = buckets
        self.watermark = watermark
        self._bucket_cache: dict[SeriesKey, int] = {}

    def process(self, messages: Sequence[Message], now: int) -> BatchResult:
        """Handle a batch in offset order; ``now`` is the wall clock in epoch ms."""
        result = BatchResult(seen=len(messages))
        windows: dict[tuple[str, str, Dims, int], Agg] = {}
        wm = self.watermark
        plans_for = self.plans
        for raw, tenant_header, offset in messages:
            tenant = tenant_header or self.default_tenant
            event_type: str | None = None
            ts: int | None = None
            try:
                if raw is None:
                    raise EnvelopeError("parse", "$", "empty message (no value)")
                event = decode(raw)
                ts = check(event)
                event_type = event["type"]
                plans = plans_for.get(event["type"])
                if plans is None:
                    raise EnvelopeError(
                        "unknown_type", "type", f"unknown event type {event_type!r}"
                    )
                if self.validate is not None:
                    self.validate(event)
                if ts < wm.value:
                    result.late += 1
                    result.dead.append(
                        self._dead(
                            EnvelopeError("late", "ts", f"{wm.value - ts} ms behind the watermark"),
                            raw,
                            offset,
                            tenant,
                            now,
                            event_type,
                            ts,
                            lateness_ms=wm.value - ts,
                        )
                    )
                    continue
                contributions = [(plan, plan.read(event)) for plan in plans]
            except EnvelopeError as exc:
                result.dead.append(self._dead(exc, raw or b"", offset, tenant, now, event_type, ts))
                continue
            wm.observe(ts)
            result.ok += 1
            for plan, read in contributions:
                if read is None:
                    continue
                dims, value = read
                start = ts - ts % plan.window_ms
                key = (tenant, plan.name, dims, start)
                agg = windows.get(key)
                if agg is None:
                    agg = windows[key] = new_agg()
                add(agg, value)
        wm.arrived(now)
        partials = result.partials
        for (tenant, metric, dims, start), agg in windows.items():
            bucket = self._bucket(tenant, metric, dims)
            partials.setdefault(bucket, []).append((tenant, metric, dims, start, agg))
        return result

    def _bucket(self, tenant: str, metric: str, dims: Dims) -> int:
        key = (tenant, metric, dims)
        bucket = self._bucket_cache.get(key)
        if bucket is None:
            if len(self._bucket_cache) > 100_000:
                self._bucket_cache.clear()
            bucket = self._bucket_cache[key] = bucket_of(tenant, metric, dims, self.buckets)
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
