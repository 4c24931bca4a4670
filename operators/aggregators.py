"""Aggregators: count, sum, avg, min and max over one mergeable state.

Every metric keeps the same four numbers per window — count, sum, min, max —
as a small list (``Agg``) that is cheap to update in the hot loop, to merge
across batches, partitions and series, and to snapshot. The metric's
aggregation only chooses which number (or ratio) is its value.
"""

from __future__ import annotations

from collections.abc import Callable

from config.spec import Aggregation

Agg = list[float]
"""``[count, sum, min, max]``; min and max are ``inf``/``-inf`` while empty."""

INF = float("inf")


def new_agg() -> Agg:
    """An empty aggregate."""
    return [0.0, 0.0, INF, -INF]


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


def _count(agg: Agg) -> float | None:
    return agg[0]


def _sum(agg: Agg) -> float | None:
    return agg[1]


def _avg(agg: Agg) -> float | None:
    return agg[1] / agg[0] if agg[0] else None


def _min(agg: Agg) -> float | None:
    return agg[2] if agg[0] else None


def _max(agg: Agg) -> float | None:
    return agg[3] if agg[0] else None


VALUE_OF: dict[Aggregation, Callable[[Agg], float | None]] = {
    "count": _count,
    "sum": _sum,
    "avg": _avg,
    "min": _min,
    "max": _max,
}
"""The metric's value from its aggregate, per aggregation."""


def value_of(
    aggregation: Aggregation, count: float, total: float, low: float | None, high: float | None
) -> float | None:
    """The value from stored parts, for readers that merged series or windows."""
    return VALUE_OF[aggregation](
        [count, total, INF if low is None else low, -INF if high is None else high]
    )
