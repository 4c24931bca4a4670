"""Mergeable sketches for distinct counts, quantiles and frequent items (Apache DataSketches).

DataSketches objects do not pickle, so everything that crosses a process or
lands in recoverable state is the sketch's serialised bytes; :class:`Sketch`
wraps the live object and converts at those borders. Merging is exact in
the sketches' own sense: a union of HLLs, a merge of KLLs, a merge of
frequent-items sketches — so rollups and ``group_by`` never average averages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import datasketches as ds

from riffle.config.spec import MetricSpec

SketchKind = Literal["hll", "kll", "items"]


@dataclass(frozen=True, slots=True)
class SketchSpec:
    """Which sketch a metric keeps and how it reports it."""

    kind: SketchKind
    size: int
    """lgK for HLL, k for KLL, lg(max map size) for frequent items."""
    quantiles: tuple[float, ...] = ()
    top: int = 0


class Sketch:
    """A live sketch; :meth:`update` takes raw values, :meth:`merge` sketches or their bytes."""

    __slots__ = ("_obj", "spec")

    def __init__(self, spec: SketchSpec, data: bytes | None = None) -> None:
        self.spec = spec
        if spec.kind == "hll":
            self._obj: Any = ds.hll_union(spec.size)
            if data is not None:
                self._obj.update(ds.hll_sketch.deserialize(data))
        elif spec.kind == "kll":
            self._obj = (
                ds.kll_doubles_sketch.deserialize(data)
                if data is not None
                else ds.kll_doubles_sketch(spec.size)
            )
        else:
            self._obj = (
                ds.frequent_strings_sketch.deserialize(data)
                if data is not None
                else ds.frequent_strings_sketch(spec.size)
            )

    def update(self, value: Any) -> None:
        """Fold one raw value in (a number for KLL, anything hashable as text otherwise)."""
        self._obj.update(value)

    def merge(self, other: Sketch | bytes) -> None:
        """Fold another sketch of the same spec in."""
        data = other.to_bytes() if isinstance(other, Sketch) else other
        if self.spec.kind == "hll":
            self._obj.update(ds.hll_sketch.deserialize(data))
        elif self.spec.kind == "kll":
            self._obj.merge(ds.kll_doubles_sketch.deserialize(data))
        else:
            self._obj.merge(ds.frequent_strings_sketch.deserialize(data))

    def to_bytes(self) -> bytes:
        """The serialised sketch: what stores keep and what crosses processes."""
        if self.spec.kind == "hll":
            return bytes(self._obj.get_result().serialize_compact())
        return bytes(self._obj.serialize())

    def value(self) -> float | None:
        """The headline number: distinct estimate, first quantile, or top item's count."""
        if self.spec.kind == "hll":
            return float(self._obj.get_estimate())
        if self.spec.kind == "kll":
            if self._obj.is_empty():
                return None
            return float(self._obj.get_quantile(self.spec.quantiles[0]))
        items = self._top()
        return float(items[0][1]) if items else None

    def detail(self) -> dict[str, Any]:
        """Everything a reader may want beyond :meth:`value`."""
        if self.spec.kind == "hll":
            return {
                "lower": float(self._obj.get_lower_bound(2)),
                "upper": float(self._obj.get_upper_bound(2)),
            }
        if self.spec.kind == "kll":
            if self._obj.is_empty():
                return {}
            return {quantile_name(q): float(self._obj.get_quantile(q)) for q in self.spec.quantiles}
        return {"top": [[item, count] for item, count in self._top()]}

    def _top(self) -> list[tuple[str, int]]:
        rows = self._obj.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_POSITIVES)
        return [(item, int(estimate)) for item, estimate, _low, _high in rows[: self.spec.top]]

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as bytes (DataSketches objects themselves do not pickle).
        return (Sketch, (self.spec, self.to_bytes()))


def quantile_name(q: float) -> str:
    """``0.5 -> "p50"``, ``0.999 -> "p99.9"``."""
    text = f"{q * 100:.6g}"
    return f"p{text}"


def sketch_for(metric: MetricSpec) -> SketchSpec | None:
    """The sketch a metric keeps, or ``None`` for the plain numeric aggregations."""
    if metric.aggregation == "distinct":
        return SketchSpec("hll", metric.precision)
    if metric.aggregation == "quantiles":
        return SketchSpec("kll", 200, quantiles=tuple(metric.quantiles))
    if metric.aggregation == "top_k":
        # The map holds 2^lgK counters: comfortably more than the items reported.
        return SketchSpec("items", max(6, (metric.top * 4 - 1).bit_length()), top=metric.top)
    return None


def merged(spec: SketchSpec, blobs: Iterable[bytes | None]) -> Sketch:
    """One sketch from the serialised sketches of several windows or series."""
    out = Sketch(spec)
    for blob in blobs:
        if blob:
            out.merge(blob)
    return out
