"""Rollups: windows merged into coarser buckets and groups, exactly.

A bucket's state is the mergeable aggregate of its windows. count, sum, min
and max merge exactly (sum of counts, sum of sums, min of mins, max of
maxes) and the metric's value is recomputed from the merged state, so a 1 h
average is total sum over total count, never a mean of minute means.

Sketched metrics (distinct counts, quantiles, top-k) also merge the
windows' serialised sketches into the bucket's (an HLL union, a sum of quantile histograms),
and :func:`finish` takes the value from the merged sketch. SQL cannot merge
these sketches, so for those metrics the warehouse span is read as windows and
merged here too (:func:`api.query.rollup_grid`).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from riffle.config.spec import Aggregation
from riffle.operators.aggregators import value_of
from riffle.operators.calendar import Calendar
from riffle.operators.records import Dims, WindowResult
from riffle.operators.sketches import Sketch, SketchSpec
from riffle.sinks.redis.windows import COUNT, FINAL, MAX, MIN, SKETCH, START, SUM
from riffle.sinks.warehouse.base import RollupRow, bucket_of


@dataclass(slots=True)
class Bucket:
    """The merged state of the windows of one group in one bucket."""

    count: int = 0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None
    windows: int = 0
    partial: bool = False
    sketch: Sketch | None = None
    """Sketched metrics: the merged sketch of the bucket's windows."""


Grid = dict[Dims, dict[int, Bucket]]
"""group dims -> bucket start -> merged state."""


def merge_into(
    bucket: Bucket,
    count: int,
    total: float,
    low: float | None,
    high: float | None,
    windows: int,
    partial: bool = False,
) -> None:
    """Fold one window's (or one engine rollup row's) state into ``bucket``."""
    bucket.count += count
    bucket.sum += total
    if low is not None:
        bucket.min = low if bucket.min is None else min(bucket.min, low)
    if high is not None:
        bucket.max = high if bucket.max is None else max(bucket.max, high)
    bucket.windows += windows
    bucket.partial = bucket.partial or partial


def add_rows(grid: Grid, rows: Iterable[RollupRow]) -> None:
    """Fold rollup rows computed by a warehouse engine into ``grid``."""
    for row in rows:
        bucket = grid.setdefault(row.dims, {}).setdefault(row.bucket, Bucket())
        merge_into(bucket, row.count, row.sum, row.min, row.max, row.windows)


def add_windows(
    grid: Grid,
    series: Iterable[tuple[Dims, list[WindowResult]]],
    by: Sequence[str],
    start_ms: int,
    step_ms: int | None,
    sketch: SketchSpec | None = None,
    calendar: Calendar | None = None,
) -> None:
    """:func:`add_stored` of windows read as :class:`WindowResult` (the warehouse's)."""
    stored = ((dims, [_as_stored(w) for w in windows]) for dims, windows in series)
    add_stored(grid, stored, by, start_ms, step_ms, sketch, calendar)


def add_stored(
    grid: Grid,
    series: Iterable[tuple[Dims, list[list[Any]]]],
    by: Sequence[str],
    start_ms: int,
    step_ms: int | None,
    sketch: SketchSpec | None = None,
    calendar: Calendar | None = None,
) -> None:
    """Fold windows as Redis stores them (rows by position, see
    :meth:`~sinks.redis.windows.RedisWindowStore.read_stored`) into ``grid``,
    grouped by ``by`` and bucketed.

    A dimension the series lacks groups as ``""``, as the engines do. With a
    ``calendar`` the buckets are its local hours or days (by window start). A
    window's ``sketch`` may be base64 text (as stored) or bytes.
    """
    bucket_at = _bucketing(start_ms, step_ms, calendar)
    for dims, windows in series:
        values = dict(dims)
        key = tuple(sorted((name, values.get(name, "")) for name in by))
        slots = grid.setdefault(key, {})
        for w in windows:
            at = bucket_at(w[START])
            bucket = slots.get(at)
            if bucket is None:
                bucket = slots[at] = Bucket()
            merge_into(bucket, w[COUNT], w[SUM], w[MIN], w[MAX], 1, not w[FINAL])
            if sketch is not None and len(w) > SKETCH and (raw := w[SKETCH]) is not None:
                if bucket.sketch is None:
                    bucket.sketch = Sketch(sketch)
                bucket.sketch.merge(base64.b64decode(raw) if isinstance(raw, str) else raw)


def _bucketing(
    start_ms: int, step_ms: int | None, calendar: Calendar | None
) -> Callable[[int], int]:
    """Window start -> bucket start: UTC multiples of ``step_ms``, or ``calendar``'s local ones."""
    if calendar is not None and step_ms is not None:
        local, step = calendar, step_ms
        return lambda begins: local.bucket(begins, step)
    return lambda begins: bucket_of(begins, start_ms, step_ms)


def _as_stored(w: WindowResult) -> list[Any]:
    return [
        w.window_start,
        w.window_end,
        w.count,
        w.sum,
        w.min,
        w.max,
        w.value,
        w.is_final,
        w.revision,
        w.emitted_at,
        w.retracted,
        w.sketch,
        w.detail,
    ]


def finish(bucket: Bucket, aggregation: Aggregation) -> float | None:
    """The metric's value of a merged bucket (from its merged sketch when it has one)."""
    if bucket.sketch is not None:
        return bucket.sketch.value()
    return value_of(aggregation, bucket.count, bucket.sum, bucket.min, bucket.max)
