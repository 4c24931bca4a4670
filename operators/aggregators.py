"""Aggregators: count, sum, avg, min, max, distinct, quantiles and top-k over one state.

Every metric keeps the same four numbers per window — count, sum, min, max —
as a small list (``Agg``) that is cheap to update in the hot loop, to merge
across batches, partitions and series, and to snapshot; sketched metrics
(distinct, quantiles, top-k) add their sketch as a fifth element. The
metric's aggregation only chooses what its value is.

A sketch is live (:class:`~operators.sketches.Sketch`) inside a stage and
bytes between stages and in snapshots: :func:`frozen` and :func:`thawed`
convert.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from riffle.config.spec import Aggregation
from riffle.operators.sketches import Sketch, SketchSpec

Agg = list[Any]
"""``[count, sum, min, max]`` (+ ``sketch``); min and max are ``inf``/``-inf`` while empty."""

INF = float("inf")


def new_agg(sketch: SketchSpec | None = None) -> Agg:
    """An empty aggregate, with an empty sketch for sketched metrics."""
    if sketch is None:
        return [0.0, 0.0, INF, -INF]
    return [0.0, 0.0, INF, -INF, Sketch(sketch)]


def add_item(agg: Agg, value: Any) -> None:
    """Fold one raw value into a sketched aggregate; numbers also feed sum, min and max."""
    agg[0] += 1.0
    if type(value) is float:
        agg[1] += value
        if value < agg[2]:
            agg[2] = value
        if value > agg[3]:
            agg[3] = value
    agg[4].update(value)


def frozen(agg: Agg) -> Agg:
    """A copy safe to pickle and to keep: the sketch as bytes."""
    if len(agg) > 4:
        return [*agg[:4], agg[4].to_bytes() if isinstance(agg[4], Sketch) else agg[4]]
    return list(agg)


def thawed(agg: Agg, sketch: SketchSpec | None) -> Agg:
    """A copy to keep updating: the sketch live again."""
    if sketch is not None and len(agg) > 4 and isinstance(agg[4], bytes):
        return [*agg[:4], Sketch(sketch, agg[4])]
    return list(agg)


def add(agg: Agg, value: float) -> None:
    """Fold one value into ``agg`` in place."""
    agg[0] += 1.0
    agg[1] += value
    if value < agg[2]:
        agg[2] = value
    if value > agg[3]:
        agg[3] = value


def merge(into: Agg, other: Agg) -> None:
    """Fold a whole aggregate into ``into`` in place."""
    into[0] += other[0]
    into[1] += other[1]
    if other[2] < into[2]:
        into[2] = other[2]
    if other[3] > into[3]:
        into[3] = other[3]
    if len(other) > 4:
        into[4].merge(other[4])


def _count(agg: Agg) -> float | None:
    return float(agg[0])


def _sum(agg: Agg) -> float | None:
    return float(agg[1])


def _avg(agg: Agg) -> float | None:
    return agg[1] / agg[0] if agg[0] else None


def _min(agg: Agg) -> float | None:
    return agg[2] if agg[0] else None


def _max(agg: Agg) -> float | None:
    return agg[3] if agg[0] else None


def _sketched(agg: Agg) -> float | None:
    sketch: Sketch = agg[4]
    return sketch.value()


VALUE_OF: dict[Aggregation, Callable[[Agg], float | None]] = {
    "count": _count,
    "sum": _sum,
    "avg": _avg,
    "min": _min,
    "max": _max,
    "distinct": _sketched,
    "quantiles": _sketched,
    "top_k": _sketched,
}
"""The metric's value from its aggregate, per aggregation."""


def value_of(
    aggregation: Aggregation, count: float, total: float, low: float | None, high: float | None
) -> float | None:
    """The value from stored parts, for readers that merged series or windows."""
    return VALUE_OF[aggregation](
        [count, total, INF if low is None else low, -INF if high is None else high]
    )
