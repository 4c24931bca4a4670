"""Series reads: the hot/cold split, their merge, and ``group_by`` across series.

Redis (hot) holds recent windows, partial and final; the warehouse (cold)
holds finals only, for as far back as retention allows. A query reads Redis
for the whole range and the warehouse only for the part Redis cannot answer,
then merges per (series, window start), so the boundary has neither gaps nor
duplicates. Everything but :func:`read_windows` is pure.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol

from riffle.config.spec import Aggregation
from riffle.operators.aggregators import value_of
from riffle.operators.records import Dims, WindowResult
from riffle.operators.sketches import SketchSpec, merged

Series = tuple[Dims, list[WindowResult]]
"""A series' dimensions and its windows, sorted by start."""


class WindowReader(Protocol):
    """What a store offers the series query (both stores in ``sinks`` do)."""

    def read_series(
        self,
        tenant: str,
        metric: str,
        start_ms: int,
        end_ms: int,
        filters: Mapping[str, Collection[str]] | None = None,
    ) -> list[Series]:
        """Windows starting in ``[start_ms, end_ms)`` of the series matching ``filters``."""
        ...


def cold_range(
    start_ms: int, end_ms: int, hot_boundary_ms: int, first_hot_ms: int | None
) -> tuple[int, int] | None:
    """The part of ``[start_ms, end_ms)`` to read from the warehouse, or ``None``.

    That is everything before ``hot_boundary_ms`` (older than the hot horizon)
    and everything before the first window Redis returned (``first_hot_ms``;
    ``None`` when it returned nothing), whichever reaches further.
    """
    covered_from = end_ms if first_hot_ms is None else first_hot_ms
    cold_end = min(end_ms, max(hot_boundary_ms, covered_from))
    return (start_ms, cold_end) if cold_end > start_ms else None


def merge_hot_cold(hot: Iterable[Series], cold: Iterable[Series]) -> list[Series]:
    """One window per (series, window start): Redis's, unless only the warehouse's is final.

    The warehouse wins a tie only when its window is final and Redis holds a
    partial (a replay refilling a flushed Redis); in every other case the Redis
    window is at least as new. Output is sorted by dimensions, then start.
    """
    merged: dict[Dims, dict[int, WindowResult]] = {}
    for dims, windows in cold:
        slots = merged.setdefault(dims, {})
        for window in windows:
            slots[window.window_start] = window
    for dims, windows in hot:
        slots = merged.setdefault(dims, {})
        for window in windows:
            old = slots.get(window.window_start)
            if old is None or window.is_final or not old.is_final:
                slots[window.window_start] = window
    return [
        (dims, [slots[start] for start in sorted(slots)]) for dims, slots in sorted(merged.items())
    ]


def group_series(
    series: Iterable[Series],
    group_by: Sequence[str],
    aggregation: Aggregation,
    sketch: SketchSpec | None = None,
) -> list[Series]:
    """Merge the series that share their ``group_by`` dimension values, window by window.

    An empty ``group_by`` merges everything into one series without
    dimensions. Merged windows are exact (see :func:`combine`). Output is
    sorted by the group's dimensions, then window start.
    """
    groups: dict[Dims, dict[int, list[WindowResult]]] = {}
    for dims, windows in series:
        values = dict(dims)
        key = tuple(sorted((name, values.get(name, "")) for name in group_by))
        slots = groups.setdefault(key, {})
        for window in windows:
            slots.setdefault(window.window_start, []).append(window)
    return [
        (key, [combine(slots[start], key, aggregation, sketch) for start in sorted(slots)])
        for key, slots in sorted(groups.items())
    ]


def combine(
    parts: Sequence[WindowResult],
    dims: Dims,
    aggregation: Aggregation,
    sketch: SketchSpec | None = None,
) -> WindowResult:
    """One window from the same window of several series.

    count, sum, min and max combine exactly and the value is recomputed from
    them (an average is total sum over total count, never a mean of means);
    sketched metrics merge their sketches (an HLL union, a quantile-histogram sum).
    The result is final only if every part is; its revision is the sum of the
    parts', so it grows whenever any part is re-emitted.
    """
    first = parts[0]
    count = sum(p.count for p in parts)
    total = sum(p.sum for p in parts)
    lows = [p.min for p in parts if p.min is not None]
    highs = [p.max for p in parts if p.max is not None]
    low = min(lows) if lows else None
    high = max(highs) if highs else None
    union = None if sketch is None else merged(sketch, (p.sketch for p in parts))
    return WindowResult(
        tenant=first.tenant,
        metric=first.metric,
        dims=dims,
        window_start=first.window_start,
        window_end=first.window_end,
        count=count,
        sum=total,
        min=low,
        max=high,
        value=value_of(aggregation, count, total, low, high) if union is None else union.value(),
        is_final=all(p.is_final for p in parts),
        revision=sum(p.revision for p in parts),
        emitted_at=max(p.emitted_at for p in parts),
        sketch=None if union is None else union.to_bytes(),
        detail=None if union is None else union.detail(),
    )


def read_windows(
    hot: WindowReader,
    cold: WindowReader,
    *,
    tenant: str,
    metric: str,
    start_ms: int,
    end_ms: int,
    filters: Mapping[str, Collection[str]] | None,
    hot_boundary_ms: int,
) -> list[Series]:
    """Windows starting in ``[start_ms, end_ms)``: Redis first, the warehouse for the rest."""
    recent = hot.read_series(tenant, metric, start_ms, end_ms, filters)
    first = min((windows[0].window_start for _, windows in recent if windows), default=None)
    span = cold_range(start_ms, end_ms, hot_boundary_ms, first)
    if span is None:
        return recent
    older = cold.read_series(tenant, metric, span[0], span[1], filters)
    return merge_hot_cold(recent, older)
