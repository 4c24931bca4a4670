"""Event-time windows of one aggregation shard ("bucket").

:class:`BucketWindows` merges partial aggregates from every source partition
into open windows and closes a window once the shard's clock — the lowest
clock among all source partitions, a partition that has not reported yet
counting as "nothing seen" — minus the metric's lateness reaches the window's
end. It publishes partial values of the windows that changed when asked.
Tumbling and hopping windows are aligned to the Unix epoch (UTC).

Session windows grow as partials arrive: overlapping sessions of a series
merge, and a session whose start moved is *retracted* at its old start
(``WindowResult.retracted``) so no store keeps the stale window.

Each emission carries a ``revision`` that grows per window; the final
emission has the highest. A metric with ``late: correct`` keeps its closed
windows until its watermark passes ``end + horizon``: a partial for one folds
in and re-emits the final with the next revision. Any other partial for a
closed window (possible only when a partition wakes from idleness behind the
others) is counted in ``dropped_after_close`` and never reopens a window with
a wrong total.

A *capped* metric (``max_values: N``) has all its series of a tenant in one
shard (see :func:`operators.ingest.bucket_of`). Each emission of one of its
windows ranks the window's series by event count (most first, ties by
dimension values) and emits the first N as they are and every other series
merged into one whose dimensions are all ``other``; a series emitted before
and folded now is retracted. The rule reads only the window's own content,
so it gives the same finals in any order, with any number of workers, live,
as a backlog or after a restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from riffle.config.spec import Aggregation
from riffle.operators.aggregators import INF, VALUE_OF, Agg, frozen, merge, new_agg, thawed
from riffle.operators.ingest import Partial, SeriesKey
from riffle.operators.records import Dims, WindowResult
from riffle.operators.sketches import SketchSpec
from riffle.operators.watermark import IDLE, NEVER

WindowKey = tuple[str, str, Dims, int]
"""``(tenant, metric, dims, window_start)``."""

_FAR = 2**62


@dataclass(frozen=True, slots=True)
class WindowRule:
    """How one metric's windows behave in the shard."""

    aggregation: Aggregation
    lateness_ms: int = 0
    horizon_ms: int = 0
    """Corrections accepted until the watermark passes ``end + horizon_ms`` (0: none)."""
    session: bool = False
    sketch: SketchSpec | None = None
    max_values: int = 0
    """Cardinality cap: series kept per window (0: no cap)."""
    other: Dims = ()
    """The dimensions of the series a capped metric folds the rest into."""


Group = tuple[str, str, int]
"""``(tenant, metric, window_start)``: every series of one window of a metric."""


@dataclass(slots=True)
class WindowState:
    """A window: its end, aggregate and how often it was emitted."""

    end: int
    agg: Agg
    revision: int = 0


@dataclass(frozen=True, slots=True)
class BucketSnapshot:
    """Recoverable state of a bucket; plain data, safe to pickle."""

    open: dict[WindowKey, tuple[int, list[float], int]]
    closed: dict[WindowKey, tuple[int, list[float], int]]
    partition_clocks: dict[str, int]
    closed_through: int
    dropped_after_close: int
    corrections: int
    others: dict[Group, int] = field(default_factory=dict)
    """Revisions of the fold series of capped metrics' open windows."""
    folded: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class BucketWindows:
    """Windows of one shard; see the module docstring for the contract."""

    rules: Mapping[str, WindowRule]
    partitions: Sequence[str]
    """Every source partition; the shard's clock waits for each of them."""
    windows: dict[WindowKey, WindowState] = field(default_factory=dict)
    closed: dict[WindowKey, WindowState] = field(default_factory=dict)
    sessions: dict[SeriesKey, list[int]] = field(default_factory=dict)
    """Starts of the open sessions of each series."""
    partition_clocks: dict[str, int] = field(default_factory=dict)
    dirty: set[WindowKey] = field(default_factory=set)
    closed_through: int = NEVER
    """The highest shard clock at which windows were closed."""
    dropped_after_close: int = 0
    corrections: int = 0
    retracted: list[WindowResult] = field(default_factory=list)
    """Retractions not yet handed out (by :meth:`apply` or :meth:`partials`)."""
    groups: dict[Group, set[Dims]] = field(default_factory=dict)
    """The open series of each window of a capped metric."""
    others: dict[Group, WindowState] = field(default_factory=dict)
    """The fold series of each open window of a capped metric."""
    published: set[WindowKey] = field(default_factory=set)
    """Series of capped metrics whose last partial emission showed them."""
    folded: dict[str, int] = field(default_factory=dict)
    """Per capped metric: series folded into ``other`` in final emissions."""
    _next_close: int = _FAR
    _next_purge: int = _FAR

    def restore(self, snap: BucketSnapshot | None) -> BucketWindows:
        """Load a snapshot into this (empty) bucket; restored open windows publish again."""
        if snap is None:
            return self
        for key, (end, agg, revision) in snap.open.items():
            if key[1] in self.rules:
                self._open(key, WindowState(end, thawed(agg, self.rules[key[1]].sketch), revision))
        for key, (end, agg, revision) in snap.closed.items():
            if key[1] in self.rules:
                state = WindowState(end, thawed(agg, self.rules[key[1]].sketch), revision)
                self._retain(key, state)
        self.partition_clocks = dict(snap.partition_clocks)
        self.closed_through = snap.closed_through
        self.dropped_after_close = snap.dropped_after_close
        self.corrections = snap.corrections
        for group, revision in snap.others.items():
            if group in self.groups:
                (key, state), *_ = self._members(group)
                self._other(group, state.end).revision = revision
        self.folded = dict(snap.folded)
        self.dirty = set(self.windows)
        return self

    def snapshot(self) -> BucketSnapshot:
        """A copy of the state that later updates cannot change."""
        return BucketSnapshot(
            open={k: (w.end, frozen(w.agg), w.revision) for k, w in self.windows.items()},
            closed={k: (w.end, frozen(w.agg), w.revision) for k, w in self.closed.items()},
            partition_clocks=dict(self.partition_clocks),
            closed_through=self.closed_through,
            dropped_after_close=self.dropped_after_close,
            corrections=self.corrections,
            others={group: state.revision for group, state in self.others.items()},
            folded=dict(self.folded),
        )

    @property
    def clock(self) -> int:
        """The shard's clock: the lowest of every partition's."""
        clocks = self.partition_clocks
        return min((clocks.get(p, NEVER) for p in self.partitions), default=NEVER)

    def apply(
        self, partition: str, clock: int, partials: Iterable[Partial], now: int
    ) -> list[WindowResult]:
        """Merge one partition's partials, then take its clock; return what to emit now."""
        corrected: set[WindowKey] = set()
        for tenant, metric, dims, start, end, agg in partials:
            rule = self.rules[metric]
            key = (tenant, metric, dims, start)
            state = self.windows.get(key)
            if rule.session and end + rule.lateness_ms > self.closed_through:
                # A session piece may extend its session's end as well as its total.
                self._merge_session(key, WindowState(end, thawed(agg, rule.sketch)), now)
            elif state is not None:
                merge(state.agg, agg)
                self.dirty.add(key)
            elif end + rule.lateness_ms > self.closed_through:
                self._open(key, WindowState(end, thawed(agg, rule.sketch)))
                self.dirty.add(key)
            elif rule.horizon_ms and end + rule.lateness_ms + rule.horizon_ms > self.closed_through:
                held = self.closed.get(key)
                if held is None:  # a late event for a window that had none
                    self._retain(key, WindowState(end, thawed(agg, rule.sketch)))
                else:
                    merge(held.agg, agg)
                corrected.add(key)
            else:
                self.dropped_after_close += 1
        self.partition_clocks[partition] = clock
        out = self._take_retractions()
        out.extend(self._result(k, self.closed[k], is_final=True, now=now) for k in corrected)
        self.corrections += len(corrected)
        out.extend(self.close(now))
        return out

    def close(self, now: int) -> list[WindowResult]:
        """Emit every open window its metric's watermark has passed."""
        clock = self.clock
        if clock >= IDLE:
            # Every partition is caught up and has never delivered an event: that
            # is no evidence of time passing. Closing "through" it would drop every
            # window opened by the first events still to come.
            return []
        self.closed_through = max(self.closed_through, clock)
        if clock >= self._next_purge:
            self._purge(clock)
        if clock < self._next_close:
            return []
        due_now: list[tuple[WindowKey, WindowState]] = []
        next_close = _FAR
        for key, state in list(self.windows.items()):
            rule = self.rules[key[1]]
            due = state.end + rule.lateness_ms
            if due <= clock:
                del self.windows[key]
                self.dirty.discard(key)
                if rule.session:
                    self._forget_session(key)
                due_now.append((key, state))
                if rule.horizon_ms:
                    self._retain(key, state)
            elif due < next_close:
                next_close = due
        self._next_close = next_close
        return self._finals(due_now, now)

    def close_all(self, now: int) -> list[WindowResult]:
        """Emit every open window as final: the input is bounded and has ended."""
        finals = self._take_retractions()
        finals += self._finals(list(self.windows.items()), now)
        self.windows.clear()
        self.sessions.clear()
        self.dirty.clear()
        self._next_close = _FAR
        return finals

    def partials(self, now: int) -> list[WindowResult]:
        """Retractions, then a partial value for every open window changed since the last call."""
        out = self._take_retractions()
        changed: set[Group] = set()
        for key in self.dirty:
            if self.rules[key[1]].max_values:
                changed.add((key[0], key[1], key[3]))
            else:
                out.append(self._result(key, self.windows[key], is_final=False, now=now))
        for group in sorted(changed):
            out += self._capped(group, self._members(group), is_final=False, now=now)
        self.dirty.clear()
        return out

    def _finals(self, states: list[tuple[WindowKey, WindowState]], now: int) -> list[WindowResult]:
        """Final emissions of windows that just closed (capped metrics per whole window)."""
        out: list[WindowResult] = []
        capped: dict[Group, list[tuple[WindowKey, WindowState]]] = {}
        for key, state in states:
            if self.rules[key[1]].max_values:
                capped.setdefault((key[0], key[1], key[3]), []).append((key, state))
            else:
                out.append(self._result(key, state, is_final=True, now=now))
        for group in sorted(capped):
            out += self._capped(group, capped[group], is_final=True, now=now)
            self.groups.pop(group, None)
            self.others.pop(group, None)
        return out

    def _members(self, group: Group) -> list[tuple[WindowKey, WindowState]]:
        tenant, metric, start = group
        keys = [(tenant, metric, dims, start) for dims in self.groups.get(group, ())]
        return [(key, self.windows[key]) for key in keys]

    def _other(self, group: Group, end: int) -> WindowState:
        """The fold series of a capped window (its revision lives as long as the window)."""
        state = self.others.get(group)
        if state is None:
            state = self.others[group] = WindowState(end, new_agg(self.rules[group[1]].sketch))
        return state

    def _capped(
        self,
        group: Group,
        members: list[tuple[WindowKey, WindowState]],
        *,
        is_final: bool,
        now: int,
    ) -> list[WindowResult]:
        """One window of a capped metric: its top series, the rest folded (module doc)."""
        rule = self.rules[group[1]]
        ranked = sorted(
            (m for m in members if m[0][2] != rule.other), key=lambda m: (-m[1].agg[0], m[0][2])
        )
        kept, folded = ranked[: rule.max_values], ranked[rule.max_values :]
        folded += [m for m in members if m[0][2] == rule.other]  # a real "other" series joins
        out = [self._result(key, state, is_final=is_final, now=now) for key, state in kept]
        if folded:
            other = self._other(group, folded[0][1].end)
            other.agg = new_agg(rule.sketch)
            for _, state in folded:
                merge(other.agg, state.agg)
            tenant, metric, start = group
            out.append(
                self._result((tenant, metric, rule.other, start), other, is_final=is_final, now=now)
            )
        for key, state in folded:
            # Take back what an earlier emission showed (after a restart: anything shown).
            if key in self.published or (is_final and state.revision and key[2] != rule.other):
                out.append(self._retraction(key, state, now))
                state.revision += 1
            self.published.discard(key)
        for key, _ in kept:
            if is_final:
                self.published.discard(key)
            else:
                self.published.add(key)
        if is_final and folded:
            self.folded[group[1]] = self.folded.get(group[1], 0) + len(folded)
        return out

    def _merge_session(self, key: WindowKey, state: WindowState, now: int) -> None:
        """Add a (partial) session to its series, merging every session it overlaps."""
        tenant, metric, dims, start = key
        series = (tenant, metric, dims)
        starts = self.sessions.setdefault(series, [])
        merged_start, end = start, state.end
        for other in [s for s in starts if s < end and start < self.windows[(*series, s)].end]:
            other_key = (*series, other)
            other_state = self.windows.pop(other_key)
            self.dirty.discard(other_key)
            starts.remove(other)
            merge(state.agg, other_state.agg)
            state.revision = max(state.revision, other_state.revision)
            merged_start = min(merged_start, other)
            end = max(end, other_state.end)
            if other_state.revision:  # it was published: take it back
                self.retracted.append(self._retraction(other_key, other_state, now))
        state.end = end
        # A retracted start that is the merged start again is simply rewritten.
        self.retracted = [
            r
            for r in self.retracted
            if r.window_start != merged_start or (r.tenant, r.metric, r.dims) != series
        ]
        merged_key = (*series, merged_start)
        starts.append(merged_start)
        self._open(merged_key, state)
        self.dirty.add(merged_key)

    def _forget_session(self, key: WindowKey) -> None:
        series = key[:3]
        starts = self.sessions.get(series)
        if starts is not None:
            starts.remove(key[3])
            if not starts:
                del self.sessions[series]

    def _take_retractions(self) -> list[WindowResult]:
        out, self.retracted = self.retracted, []
        return out

    def _open(self, key: WindowKey, state: WindowState) -> None:
        self.windows[key] = state
        if self.rules[key[1]].max_values:
            self.groups.setdefault((key[0], key[1], key[3]), set()).add(key[2])
        if self.rules[key[1]].session:
            starts = self.sessions.setdefault(key[:3], [])
            if key[3] not in starts:
                starts.append(key[3])
        due = state.end + self.rules[key[1]].lateness_ms
        if due < self._next_close:
            self._next_close = due

    def _retain(self, key: WindowKey, state: WindowState) -> None:
        self.closed[key] = state
        rule = self.rules[key[1]]
        self._next_purge = min(self._next_purge, state.end + rule.lateness_ms + rule.horizon_ms)

    def _purge(self, clock: int) -> None:
        """Forget closed windows whose correction horizon the clock has passed."""
        keep: dict[WindowKey, WindowState] = {}
        next_purge = _FAR
        for key, state in self.closed.items():
            rule = self.rules[key[1]]
            until = state.end + rule.lateness_ms + rule.horizon_ms
            if until > clock:
                keep[key] = state
                next_purge = min(next_purge, until)
        self.closed = keep
        self._next_purge = next_purge

    def _retraction(self, key: WindowKey, state: WindowState, now: int) -> WindowResult:
        tenant, metric, dims, start = key
        return WindowResult(
            tenant=tenant,
            metric=metric,
            dims=dims,
            window_start=start,
            window_end=state.end,
            count=0,
            sum=0.0,
            min=None,
            max=None,
            value=None,
            is_final=False,
            revision=state.revision + 1,
            emitted_at=now,
            retracted=True,
        )

    def _result(
        self, key: WindowKey, state: WindowState, *, is_final: bool, now: int
    ) -> WindowResult:
        tenant, metric, dims, start = key
        state.revision += 1
        agg = state.agg
        has = agg[2] != INF  # numbers were folded in (not so for distinct or top-k)
        sketch = agg[4] if len(agg) > 4 else None
        return WindowResult(
            tenant=tenant,
            metric=metric,
            dims=dims,
            window_start=start,
            window_end=state.end,
            count=int(agg[0]),
            sum=agg[1],
            min=agg[2] if has else None,
            max=agg[3] if has else None,
            value=VALUE_OF[self.rules[metric].aggregation](agg),
            is_final=is_final,
            revision=state.revision,
            emitted_at=now,
            sketch=None if sketch is None else sketch.to_bytes(),
            detail=None if sketch is None else sketch.detail(),
        )
