"""Event-time tumbling windows of one aggregation shard ("bucket").

:class:`BucketWindows` merges partial aggregates from every source partition
into open windows and closes a window once the shard's watermark — the
lowest watermark among all source partitions, a partition that has not
reported yet counting as "nothing seen" — reaches its end. It publishes
partial values of the windows that changed when asked. Windows are aligned to
the Unix epoch (UTC), so a 1 m window starts on the minute.

Each emission carries a ``revision`` that grows per window; the final
emission has the highest. Closed windows stay correctable for
``correction_ms``: a partial that arrives for one (possible only when a
partition wakes from idleness behind the others) folds in and re-emits the
final with the next revision. Past that horizon it is counted in
``dropped_after_close`` and never reopens a window with a wrong total.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from config.spec import Aggregation
from operators.aggregators import VALUE_OF, Agg, merge
from operators.ingest import Partial
from operators.records import Dims, WindowResult
from operators.watermark import NEVER

WindowKey = tuple[str, str, Dims, int]
"""``(tenant, metric, dims, window_start)``."""

_FAR = 2**62


def window_start(ts: int, size_ms: int) -> int:
    """Start of the epoch-aligned tumbling window of ``size_ms`` holding ``ts``."""
    return ts - ts % size_ms


@dataclass(slots=True)
class WindowState:
    """A window: its aggregate and how often it was emitted."""

    agg: Agg
    revision: int = 0


@dataclass(frozen=True, slots=True)
class BucketSnapshot:
    """Recoverable state of a bucket; plain data, safe to pickle."""

    open: dict[WindowKey, tuple[list[float], int]]
    closed: dict[WindowKey, tuple[list[float], int]]
    partition_wms: dict[str, int]
    closed_through: int
    dropped_after_close: int
    corrections: int


@dataclass(slots=True)
class BucketWindows:
    """Windows of one shard; see the module docstring for the contract."""

    metrics: Mapping[str, tuple[int, Aggregation]]
    """Metric name to ``(window_ms, aggregation)``."""
    partitions: Sequence[str]
    """Every source partition; the watermark waits for each of them."""
    correction_ms: int = 0
    windows: dict[WindowKey, WindowState] = field(default_factory=dict)
    closed: dict[WindowKey, WindowState] = field(default_factory=dict)
    partition_wms: dict[str, int] = field(default_factory=dict)
    dirty: set[WindowKey] = field(default_factory=set)
    closed_through: int = NEVER
    dropped_after_close: int = 0
    corrections: int = 0
    _next_close: int = _FAR
    _next_purge: int = _FAR

    def restore(self, snap: BucketSnapshot | None) -> BucketWindows:
        """Load a snapshot into this (empty) bucket; restored open windows publish again."""
        if snap is None:
            return self
        for key, (agg, revision) in snap.open.items():
            if key[1] in self.metrics:
                self._open(key, list(agg), revision)
        self.closed = {
            k: WindowState(list(a), r) for k, (a, r) in snap.closed.items() if k[1] in self.metrics
        }
        self._next_purge = min((k[3] + self.metrics[k[1]][0] for k in self.closed), default=_FAR)
        self.partition_wms = dict(snap.partition_wms)
        self.closed_through = snap.closed_through
        self.dropped_after_close = snap.dropped_after_close
        self.corrections = snap.corrections
        self.dirty = set(self.windows)
        return self

    def snapshot(self) -> BucketSnapshot:
        """A copy of the state that later updates cannot change."""
        return BucketSnapshot(
            open={k: (list(w.agg), w.revision) for k, w in self.windows.items()},
            closed={k: (list(w.agg), w.revision) for k, w in self.closed.items()},
            partition_wms=dict(self.partition_wms),
            closed_through=self.closed_through,
            dropped_after_close=self.dropped_after_close,
            corrections=self.corrections,
        )

    @property
    def watermark(self) -> int:
        """The shard's watermark: the lowest of every partition's."""
        wms = self.partition_wms
        return min((wms.get(p, NEVER) for p in self.partitions), default=NEVER)

    def apply(
        self, partition: str, watermark: int, partials: Iterable[Partial], now: int
    ) -> list[WindowResult]:
        """Merge one partition's partials, then take its watermark; return finals emitted."""
        corrected: set[WindowKey] = set()
        for tenant, metric, dims, start, agg in partials:
            key = (tenant, metric, dims, start)
            state = self.windows.get(key)
            if state is not None:
                merge(state.agg, agg)
                self.dirty.add(key)
            elif start + self.metrics[metric][0] > self.closed_through:
                self._open(key, list(agg), 0)
                self.dirty.add(key)
            elif key in self.closed:
                merge(self.closed[key].agg, agg)
                corrected.add(key)
            else:
                self.dropped_after_close += 1
        self.partition_wms[partition] = watermark
        finals = [self._result(k, self.closed[k], is_final=True, now=now) for k in corrected]
        self.corrections += len(corrected)
        finals.extend(self.close(now))
        return finals

    def close(self, now: int) -> list[WindowResult]:
        """Emit every open window whose end the watermark has reached."""
        wm = self.watermark
        self.closed_through = max(self.closed_through, wm)
        if wm - self.correction_ms >= self._next_purge:
            self._purge(wm - self.correction_ms)
        if wm < self._next_close:
            return []
        finals: list[WindowResult] = []
        next_close = _FAR
        for key in list(self.windows):
            end = key[3] + self.metrics[key[1]][0]
            if end <= wm:
                state = self.windows.pop(key)
                self.dirty.discard(key)
                finals.append(self._result(key, state, is_final=True, now=now))
                if self.correction_ms:
                    self.closed[key] = state
                    self._next_purge = min(self._next_purge, end)
            elif end < next_close:
                next_close = end
        self._next_close = next_close
        return finals

    def _purge(self, horizon: int) -> None:
        """Forget closed windows that ended at or before ``horizon``."""
        keep: dict[WindowKey, WindowState] = {}
        next_purge = _FAR
        for key, state in self.closed.items():
            end = key[3] + self.metrics[key[1]][0]
            if end > horizon:
                keep[key] = state
                next_purge = min(next_purge, end)
        self.closed = keep
        self._next_purge = next_purge

    def close_all(self, now: int) -> list[WindowResult]:
        """Emit every open window as final: the input is bounded and has ended."""
        finals = [self._result(k, s, is_final=True, now=now) for k, s in self.windows.items()]
        self.windows.clear()
        self.dirty.clear()
        self._next_close = _FAR
        return finals

    def partials(self, now: int) -> list[WindowResult]:
        """A partial value for every open window that changed since the last call."""
        out = [self._result(key, self.windows[key], is_final=False, now=now) for key in self.dirty]
        self.dirty.clear()
        return out

    def _open(self, key: WindowKey, agg: Agg, revision: int) -> None:
        self.windows[key] = WindowState(agg, revision)
        end = key[3] + self.metrics[key[1]][0]
        if end < self._next_close:
            self._next_close = end

    def _result(
        self, key: WindowKey, state: WindowState, *, is_final: bool, now: int
    ) -> WindowResult:
        tenant, metric, dims, start = key
        window_ms, aggregation = self.metrics[metric]
        state.revision += 1
        agg = state.agg
        has = agg[0] > 0
        return WindowResult(
            tenant=tenant,
            metric=metric,
            dims=dims,
            window_start=start,
            window_end=start + window_ms,
            count=int(agg[0]),
            sum=agg[1],
            min=agg[2] if has else None,
            max=agg[3] if has else None,
            value=VALUE_OF[aggregation](agg),
            is_final=is_final,
            revision=state.revision,
            emitted_at=now,
        )
