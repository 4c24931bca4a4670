"""Mergeable sketches for distinct counts, quantiles and frequent items.

DataSketches objects do not pickle, so everything that crosses a process or
lands in recoverable state is the sketch's serialised bytes; :class:`Sketch`
wraps the live object and converts at those borders. Merging is exact in
the sketches' own sense: a union of HLLs, a sum of quantile histograms, a
merge of frequent-items sketches — so rollups and ``group_by`` never average
averages.

**Same values, same numbers.** What :meth:`Sketch.value` and
:meth:`Sketch.detail` report depends only on the multiset of values folded in,
never on how they were split into batches, merged, serialised or restored —
so a window replayed after ``kill -9``, computed by three processes instead of
one, or restored from a backup has exactly the finals of an uninterrupted run:

* HLL: DataSketches picks its estimator by history (the HIP estimator for a
  sketch only ever updated, the composite one after a union), so the same
  registers gave different estimates on different paths. Estimates are taken
  from a canonical copy, the sketch unioned with itself, which is always
  "out of order" and so always uses the composite estimator, computed from the
  registers alone.
* Quantiles: a relative-error histogram (the DDSketch algorithm, 1 % relative
  error): a count per logarithmic bucket, merged by adding counts. KLL,
  used before, draws random bits when it compacts, and its state depends on
  the order and grouping of updates, which no seed can fix.
* Frequent items: exact (so order-free) while a series' window has at most
  768 distinct items (a map of 2^10 counters), with ties ranked by item; past
  that, counts are approximate and can depend on the order of merges.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import datasketches as ds
import numpy as np

from riffle.config.spec import MetricSpec

SketchKind = Literal["hll", "quantiles", "items"]

RELATIVE_ACCURACY = 0.01
"""Quantile sketches answer within 1 % of the true value at the requested rank."""

_ITEMS_LG_MAP = 10
"""Frequent items: 2^10 counters, exact up to 768 distinct items per sketch."""


@dataclass(frozen=True, slots=True)
class SketchSpec:
    """Which sketch a metric keeps and how it reports it."""

    kind: SketchKind
    size: int
    """lgK for HLL, 1 / relative accuracy for quantiles, lg(max map size) for frequent items."""
    quantiles: tuple[float, ...] = ()
    top: int = 0


class QuantileHistogram:
    """Values counted in logarithmic buckets: the DDSketch algorithm, without collapsing.

    A value ``v != 0`` falls in bucket ``ceil(log_gamma(|v|))`` of its sign, with
    ``gamma = (1 + a) / (1 - a)``; a bucket's representative value is within
    ``a`` (relative) of every value in it, so every quantile is within ``a`` of
    the exact one at its rank. Zero has its own bucket. Buckets are kept as one
    sorted array of signed keys (ordered as their values) with integer counts,
    plus the exact minimum and maximum: a merge adds counts, so the state — and
    its serialised bytes — is a function of the multiset of values only.
    Updates are list appends, indexed in bulk (numpy) when the histogram is
    read, merged or serialised.
    """

    __slots__ = ("_counts", "_gamma_log", "_high", "_keys", "_low", "_pending", "_size")

    _MAGIC = b"RQH\x01"
    _HEAD = struct.Struct("<4sHddI")
    _BIAS = 1 << 17
    """Added to bucket indices (|index| < 2^16 for every finite double) so a key's sign
    is its value's, and keys sort as values do."""
    _FOLD_AT = 8192

    def __init__(self, size: int) -> None:
        self._size = size
        accuracy = 1.0 / size
        self._gamma_log = math.log((1 + accuracy) / (1 - accuracy))
        self._keys = np.empty(0, dtype=np.int64)
        self._counts = np.empty(0, dtype=np.int64)
        self._low = math.inf
        self._high = -math.inf
        self._pending: list[float] = []

    def update(self, value: float) -> None:
        """Count one finite number."""
        self._pending.append(value)
        if len(self._pending) >= self._FOLD_AT:
            self._fold()

    def _fold(self) -> None:
        if not self._pending:
            return
        values = np.asarray(self._pending, dtype=np.float64)
        self._pending = []
        self._low = min(self._low, float(values.min()))
        self._high = max(self._high, float(values.max()))
        with np.errstate(all="ignore"):  # log(0): zeros take key 0 below
            index = np.ceil(np.log(np.abs(values)) / self._gamma_log) + self._BIAS
            keys = np.where(values == 0.0, 0.0, np.sign(values) * index).astype(np.int64)
        self._add(keys, np.ones(keys.size, dtype=np.int64))

    def _add(self, keys: np.ndarray[Any, Any], counts: np.ndarray[Any, Any]) -> None:
        merged, at = np.unique(np.concatenate((self._keys, keys)), return_inverse=True)
        # Float sums are exact below 2^53 values per bucket.
        totals = np.bincount(at, weights=np.concatenate((self._counts, counts)))
        self._keys, self._counts = merged, totals.astype(np.int64)

    def merge(self, other: QuantileHistogram) -> None:
        """Add ``other``'s counts (same accuracy) to this histogram."""
        other._fold()
        self._fold()
        if other._keys.size:
            self._add(other._keys, other._counts)
            self._low = min(self._low, other._low)
            self._high = max(self._high, other._high)

    def quantiles(self, qs: Sequence[float]) -> list[float] | None:
        """The values at ranks ``q * (count - 1)`` (lower), each within the relative accuracy
        and never outside the values seen; ``None`` while empty."""
        self._fold()
        if not self._keys.size:
            return None
        cumulative = np.cumsum(self._counts)
        ranks = np.asarray(qs, dtype=np.float64) * float(cumulative[-1] - 1)
        keys = self._keys[np.searchsorted(cumulative, ranks, side="right")].astype(np.float64)
        gamma = math.exp(self._gamma_log)
        values = np.sign(keys) * 2 * np.power(gamma, np.abs(keys) - self._BIAS) / (gamma + 1)
        return [min(max(float(v), self._low), self._high) for v in values]

    def serialize(self) -> bytes:
        """Header, then the bucket keys and counts in key order (deterministic bytes)."""
        self._fold()
        head = self._HEAD.pack(self._MAGIC, self._size, self._low, self._high, self._keys.size)
        return head + self._keys.astype("<i4").tobytes() + self._counts.astype("<u8").tobytes()

    @classmethod
    def deserialize(cls, data: bytes, size: int) -> QuantileHistogram:
        """A histogram from :meth:`serialize`'s bytes, or from a KLL sketch stored before.

        A KLL sketch (stored by earlier releases) is converted by counting each
        value it retained with its weight: as accurate as that KLL was.
        """
        out = cls(size)
        if not data.startswith(cls._MAGIC):
            for value, weight in ds.kll_doubles_sketch.deserialize(data):
                out._pending.extend([value] * int(weight))
            out._fold()
            return out
        _magic, stored, out._low, out._high, n = cls._HEAD.unpack_from(data)
        if stored != size:
            raise ValueError(f"a quantile sketch of accuracy 1/{stored} is not one of 1/{size}")
        at = cls._HEAD.size
        out._keys = np.frombuffer(data, dtype="<i4", count=n, offset=at).astype(np.int64)
        out._counts = np.frombuffer(data, dtype="<u8", count=n, offset=at + 4 * n).astype(np.int64)
        return out


class Sketch:
    """A live sketch; :meth:`update` takes raw values, :meth:`merge` sketches or their bytes."""

    __slots__ = ("_obj", "spec")

    def __init__(self, spec: SketchSpec, data: bytes | None = None) -> None:
        self.spec = spec
        if spec.kind == "hll":
            self._obj: Any = ds.hll_union(spec.size)
            if data is not None:
                self._obj.update(ds.hll_sketch.deserialize(data))
        elif spec.kind == "quantiles":
            self._obj = (
                QuantileHistogram.deserialize(data, spec.size)
                if data is not None
                else QuantileHistogram(spec.size)
            )
        else:
            self._obj = (
                ds.frequent_strings_sketch.deserialize(data)
                if data is not None
                else ds.frequent_strings_sketch(spec.size)
            )

    def update(self, value: Any) -> None:
        """Fold one raw value in (a number for quantiles, anything hashable as text otherwise)."""
        self._obj.update(value)

    def merge(self, other: Sketch | bytes) -> None:
        """Fold another sketch of the same spec in."""
        if self.spec.kind == "quantiles":
            self._obj.merge(
                other._obj
                if isinstance(other, Sketch)
                else QuantileHistogram.deserialize(other, self.spec.size)
            )
            return
        data = other.to_bytes() if isinstance(other, Sketch) else other
        if self.spec.kind == "hll":
            self._obj.update(ds.hll_sketch.deserialize(data))
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
            return float(self._canonical_hll().get_estimate())
        if self.spec.kind == "quantiles":
            found = self._obj.quantiles(self.spec.quantiles[:1])
            return None if found is None else float(found[0])
        items = self._top()
        return float(items[0][1]) if items else None

    def detail(self) -> dict[str, Any]:
        """Everything a reader may want beyond :meth:`value`."""
        if self.spec.kind == "hll":
            canonical = self._canonical_hll()
            return {
                "lower": float(canonical.get_lower_bound(2)),
                "upper": float(canonical.get_upper_bound(2)),
            }
        if self.spec.kind == "quantiles":
            found = self._obj.quantiles(self.spec.quantiles)
            if found is None:
                return {}
            return {quantile_name(q): v for q, v in zip(self.spec.quantiles, found, strict=True)}
        return {"top": [[item, count] for item, count in self._top()]}

    def _canonical_hll(self) -> Any:
        """The sketch unioned with itself: same registers, always the composite estimator."""
        result = self._obj.get_result(ds.tgt_hll_type.HLL_8)
        union = ds.hll_union(self.spec.size)
        union.update(result)
        union.update(result)
        return union

    def _top(self) -> list[tuple[str, int]]:
        rows = self._obj.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_POSITIVES)
        ranked = sorted(((item, int(estimate)) for item, estimate, _lo, _hi in rows), key=_by_count)
        return ranked[: self.spec.top]

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as bytes (DataSketches objects themselves do not pickle).
        return (Sketch, (self.spec, self.to_bytes()))


def _by_count(row: tuple[str, int]) -> tuple[int, str]:
    """Most counted first; equal counts by item, so ties never follow hash-map order."""
    return (-row[1], row[0])


def quantile_name(q: float) -> str:
    """``0.5 -> "p50"``, ``0.999 -> "p99.9"``."""
    text = f"{q * 100:.6g}"
    return f"p{text}"


def sketch_for(metric: MetricSpec) -> SketchSpec | None:
    """The sketch a metric keeps, or ``None`` for the plain numeric aggregations."""
    if metric.aggregation == "distinct":
        return SketchSpec("hll", metric.precision)
    if metric.aggregation == "quantiles":
        return SketchSpec(
            "quantiles", round(1 / RELATIVE_ACCURACY), quantiles=tuple(metric.quantiles)
        )
    if metric.aggregation == "top_k":
        # Comfortably more counters than items reported, and exact for most windows.
        return SketchSpec(
            "items", max(_ITEMS_LG_MAP, (metric.top * 4 - 1).bit_length()), top=metric.top
        )
    return None


def merged(spec: SketchSpec, blobs: Iterable[bytes | None]) -> Sketch:
    """One sketch from the serialised sketches of several windows or series."""
    out = Sketch(spec)
    for blob in blobs:
        if blob:
            out.merge(blob)
    return out
