"""The alert stage's logic: compiled rules, the rule feed, the fan-out and the shard logic.

Rules come from two places: the spec's ``alerts:`` list (fixed for the life of
the flow, keyed by name) and the tenants' rules made through the API, read
from a versioned log (:mod:`operators.alert_rules`, stored by
:mod:`sinks.redis.rules`) and keyed ``tenant/name``. A tenant rule applies to
that tenant's windows that end at or after its ``effective_from``; the stage
reads the log again whenever it is asked about an event time the log it holds
does not cover, so every reader (the fan-out, every shard, a replay) applies
the same version to the same window.

A change takes effect in a shard at its ``effective_from``, before any window
ending at or after it is evaluated: an update that keeps the rule's kind,
metric and ``group_by`` keeps its instances (their state carries on under the
new thresholds and durations); a delete, or an update that changes those,
turns the old instances that are not Normal to Normal at ``effective_from``
and starts afresh. The number of log entries a shard has applied is part of
its snapshot, so a resumed shard neither re-applies nor skips one.

Besides windows, a shard may get the source partitions' clocks (``clocks``):
the lowest of them, less a rule's lateness, is an event time through which
every final window has been emitted, which keeps absence and NoData moving
when no window reaches the shard — including when the whole stream stops,
since a caught-up, idle partition's clock advances with the wall clock
(:mod:`operators.watermark`). The clock is applied one tick after it was
read, so the finals it closed have reached the shard first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from bytewax.operators import StatefulBatchLogic

from riffle.config.alerts import AlertRule, AnomalyRule, ForecastRule, rule_problems
from riffle.config.spec import PipelineSpec
from riffle.operators.alert_rules import RuleBook, RuleChange
from riffle.operators.alerts.evaluator import RuleEvaluator
from riffle.operators.alerts.instances import Instance, instance_group, instance_id
from riffle.operators.alerts.observations import Observation
from riffle.operators.alerts.transitions import AlertTransition
from riffle.operators.models.series import AnomalyRecord, ForecastRecord, ModelRecord
from riffle.operators.records import WindowResult
from riffle.operators.watermark import IDLE, NEVER

CLOCK = ""
"""The rule key of a partition-clock item (no rule is named so)."""


@dataclass(frozen=True)
class CompiledRule:
    """A rule with what the stage needs from its metric."""

    rule: AlertRule
    aggregation: str
    window_ms: int
    merges: bool
    lateness_ms: int = 0
    tenant: str | None = None
    """The tenant of a rule made through the API; None for the spec's rules."""

    def evaluator(self, instances: dict[str, Instance]) -> RuleEvaluator:
        return RuleEvaluator(
            self.rule, self.aggregation, self.merges, instances, window_ms=self.window_ms
        )

    @property
    def identity(self) -> tuple[str, str, tuple[str, ...] | None]:
        """What a rule update must keep for its instances to carry on."""
        group = None if self.rule.group_by is None else tuple(self.rule.group_by)
        return (self.rule.kind, self.rule.metric, group)


@dataclass(frozen=True, slots=True)
class ClockReading:
    """A reading of a source partition's clock (:class:`operators.watermark.PartitionClock`'s
    ``reported``) as the ingest stage sent it to the alert shards."""

    partition: str
    clock: int


@dataclass(frozen=True, slots=True)
class RuleTick:
    """A final window ending at ``at`` went through the fan-out: every shard applies the
    rule changes in force by then (their transitions are stamped with the change's own
    time, so applying them on a tick rather than on the next item changes nothing but
    when they are emitted)."""

    at: int


@dataclass
class AlertShardState:
    """What a shard's snapshot holds: instances per rule key, the shard's clock, how many
    rule-log entries it applied and the partitions' clocks."""

    instances: dict[str, dict[str, Instance]] = field(default_factory=dict)
    clock: int = -1
    applied: int = 0
    partition_clocks: dict[str, int] = field(default_factory=dict)
    horizon: int = NEVER
    """Stream clock applied so far (the lowest partition clock, one tick old)."""


def compile_rule(
    rule: AlertRule, spec: PipelineSpec, *, default_lateness_ms: int, tenant: str | None = None
) -> CompiledRule | None:
    """``rule`` with its metric's figures; None when it does not fit ``spec`` (a tenant
    rule whose metric was removed from the spec since it was written)."""
    metric = spec.metric(rule.metric)
    if metric is None or any(True for _ in rule_problems([rule], spec.metrics)):
        return None
    merges = rule.group_by is not None and set(rule.group_by) != set(metric.dimensions)
    lateness = (
        default_lateness_ms
        if metric.lateness is None
        else int(metric.lateness.total_seconds() * 1000)
    )
    return CompiledRule(rule, metric.aggregation, metric.window_ms, merges, lateness, tenant)


def compile_rules(spec: PipelineSpec, *, default_lateness_ms: int = 0) -> dict[str, CompiledRule]:
    """The spec's rules by name, with their metric's aggregation and window length."""
    out = {}
    for rule in spec.alerts:
        compiled = compile_rule(rule, spec, default_lateness_ms=default_lateness_ms)
        assert compiled is not None  # checked on load
        out[rule.name] = compiled
    return out


def shard_of(tenant: str, rule: AlertRule, obs: Observation, shards: int) -> str:
    """The alert shard of the instance ``obs`` belongs to (stable, never ``hash``)."""
    key = instance_id(tenant, rule.name, instance_group(rule, obs.dims))
    return f"a{int(key[:8], 16) % shards:03d}"


class RuleLog(Protocol):
    """Where tenant rules are read from (:class:`sinks.redis.rules.AlertRuleStore`)."""

    def read(self, start: int = 0, through: int = 0) -> tuple[int, list[RuleChange]]: ...


class RuleFeed:
    """A :class:`RuleBook` kept covering the event times asked about; thread-safe.

    ``compiled(entry)`` is the entry's rule compiled against the spec (None for a
    deletion, a name the spec already uses, or a rule that no longer fits the spec).
    """

    def __init__(self, log: RuleLog, spec: PipelineSpec, *, default_lateness_ms: int) -> None:
        self.log = log
        self.spec = spec
        self.default_lateness_ms = default_lateness_ms
        self.book = RuleBook()
        self._spec_names = {r.name for r in spec.alerts}
        self._compiled: dict[int, CompiledRule | None] = {}
        self._lock = threading.Lock()

    def ensure(self, at: int, entries: int = 0) -> RuleBook:
        """The book, read again first unless it covers ``at`` and holds ``entries``."""
        book = self.book
        if book.covers(at) and len(book.entries) >= entries:
            return book  # the book only grows: no lock needed to find it covers enough
        with self._lock:
            if not self.book.covers(at) or len(self.book.entries) < entries:
                through, new = self.log.read(len(self.book.entries), at + 1)
                self.book.extend(new, through)
            return self.book

    def compiled(self, entry: RuleChange) -> CompiledRule | None:
        if entry.seq in self._compiled:
            return self._compiled[entry.seq]
        with self._lock:
            if entry.seq not in self._compiled:
                rule = entry.parsed()
                self._compiled[entry.seq] = (
                    None
                    if rule is None or rule.name in self._spec_names or rule.name != entry.name
                    else compile_rule(
                        rule,
                        self.spec,
                        default_lateness_ms=self.default_lateness_ms,
                        tenant=entry.tenant,
                    )
                )
            return self._compiled[entry.seq]

    def in_force(self, tenant: str, metric: str, at: int) -> list[tuple[str, CompiledRule]]:
        """The tenant rules on ``metric`` in force at ``at``, with their keys."""
        book = self.ensure(at)
        out = []
        for key in book.keys_for(tenant, metric):
            entry = book.version_at(key, at)
            compiled = None if entry is None else self.compiled(entry)
            if compiled is not None and compiled.rule.metric == metric:
                out.append((key, compiled))
        return out


AlertItem = tuple[str, Observation | ClockReading | RuleTick]
"""``(rule key, observation)``, or ``(CLOCK, partition clock or rule tick)``."""


class FanOut:
    """Window results and model records → one item per (rule, series), keyed by shard."""

    def __init__(
        self,
        rules: Mapping[str, CompiledRule],
        shards: int,
        feed: RuleFeed | None,
        windows: Mapping[str, int],
    ) -> None:
        self.shards = shards
        self.feed = feed
        self.windows = windows
        self._ticked = NEVER
        self.by_metric: dict[str, list[CompiledRule]] = {}
        for c in rules.values():
            self.by_metric.setdefault(c.rule.metric, []).append(c)

    def _rules(self, tenant: str, metric: str, at: int) -> list[tuple[str, CompiledRule]]:
        out = [(c.rule.name, c) for c in self.by_metric.get(metric, [])]
        if self.feed is not None:
            out += self.feed.in_force(tenant, metric, at)
        return out

    def window(self, w: WindowResult) -> list[tuple[str, AlertItem]]:
        """A final goes to the rules in force at its end; a partial (of a window still
        open, whose end the rule log does not cover yet) to those in force at its start."""
        if w.retracted:
            return []
        obs = Observation.of_window(w)
        at = w.window_end if w.is_final else w.window_start
        out: list[tuple[str, AlertItem]] = [
            (shard_of(w.tenant, c.rule, obs, self.shards), (key, obs))
            for key, c in self._rules(w.tenant, w.metric, at)
            if not isinstance(c.rule, AnomalyRule) and (w.is_final or c.rule.evaluate == "partial")
        ]
        if self.feed is not None and w.is_final and w.window_end > self._ticked:
            self._ticked = w.window_end
            tick = RuleTick(w.window_end)
            out += [(f"a{s:03d}", (CLOCK, tick)) for s in range(self.shards)]
        return out

    def model(self, r: ModelRecord) -> list[tuple[str, AlertItem]]:
        """A record goes to the rules in force at the end of the window it follows."""
        out: list[tuple[str, AlertItem]] = []
        at = r.window_start + self.windows.get(r.metric, 0)
        if isinstance(r, AnomalyRecord):
            for key, c in self._rules(r.tenant, r.metric, at):
                if isinstance(c.rule, AnomalyRule):
                    end = r.window_start + c.window_ms
                    obs = Observation(
                        r.tenant, r.metric, r.dims, end, r.result.value, score=r.result.score
                    )
                    out.append((shard_of(r.tenant, c.rule, obs, self.shards), (key, obs)))
        elif isinstance(r, ForecastRecord) and r.forecast.points:
            ts, mean, low, high = r.forecast.points[0]
            for key, c in self._rules(r.tenant, r.metric, at):
                if isinstance(c.rule, ForecastRule):
                    obs = Observation(
                        r.tenant,
                        r.metric,
                        r.dims,
                        int(ts) + c.window_ms,
                        None,
                        interval=(mean, low, high),
                        history=r.skill.n,
                    )
                    out.append((shard_of(r.tenant, c.rule, obs, self.shards), (key, obs)))
        return out

    def clock(self, item: ClockReading) -> list[tuple[str, AlertItem]]:
        """A partition clock goes to every shard."""
        return [(f"a{s:03d}", (CLOCK, item)) for s in range(self.shards)]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class AlertLogic(StatefulBatchLogic[AlertItem, AlertTransition, AlertShardState]):
    """One shard's alert instances; emits a transition whenever one changes state.

    Items are evaluated in order of window end within a batch; before each new
    final window end the shard's clock advances (flushing merged windows, judging
    absence and NoData). A window at or before an instance's last evaluation is
    ignored, so re-emitted or replayed finals cause no second transition. Rule
    changes due by a final window's end are applied before it (see the module
    docstring); partials and forecast intervals go to the rules already applied.
    With ``partitions``, a wall-clock tick of ``tick_ms`` applies the partitions'
    clock read one tick earlier.
    """

    def __init__(
        self,
        rules: Mapping[str, CompiledRule],
        resume: AlertShardState | None,
        *,
        feed: RuleFeed | None = None,
        partitions: Sequence[str] = (),
        tick_ms: int = 1000,
    ) -> None:
        self.state = resume if resume is not None else AlertShardState()
        self.rules: dict[str, CompiledRule] = dict(rules)
        self.feed = feed
        self.partitions = list(partitions)
        self.tick_ms = tick_ms
        self._candidate: int | None = None
        self._next_tick = _now_ms() + tick_ms
        if feed is not None and self.state.applied:
            book = feed.ensure(NEVER, self.state.applied)
            for entry in book.entries[: self.state.applied]:
                self._set_rule(entry.key, feed.compiled(entry))
        self.evaluators = {
            key: c.evaluator(self.state.instances.setdefault(key, {}))
            for key, c in self.rules.items()
        }

    def _set_rule(self, key: str, compiled: CompiledRule | None) -> None:
        if compiled is None:
            self.rules.pop(key, None)
        else:
            self.rules[key] = compiled

    def on_batch(self, values: list[AlertItem]) -> tuple[list[AlertTransition], bool]:
        out: list[AlertTransition] = []
        observations: list[tuple[str, Observation]] = []
        ticked = NEVER
        for key, item in values:
            if isinstance(item, ClockReading):
                known = self.state.partition_clocks.get(item.partition, NEVER)
                self.state.partition_clocks[item.partition] = max(known, item.clock)
            elif isinstance(item, RuleTick):
                ticked = max(ticked, item.at)
            else:
                observations.append((key, item))
        for key, obs in sorted(observations, key=lambda v: v[1].window_end):
            at = obs.window_end
            complete = obs.final and obs.interval is None  # a final window or its score
            if complete:
                out += self._changes_through(at)
            evaluator = self.evaluators.get(key)
            if evaluator is None:  # a rule removed since the item was routed or snapshotted
                continue
            if complete and at > self.state.clock:
                self.state.clock = at
                out += self._advance()
            out += evaluator.observe(obs)
        if ticked > NEVER:
            out += self._changes_through(ticked)
        return out, self.RETAIN

    def on_notify(self) -> tuple[list[AlertTransition], bool]:
        self._next_tick = _now_ms() + self.tick_ms
        applied, self._candidate = self._candidate, self._stream_clock()
        out: list[AlertTransition] = []
        if applied is not None and applied > self.state.horizon:
            self.state.horizon = applied
            lowest = min((c.lateness_ms for c in self.rules.values()), default=0)
            out += self._changes_through(applied - lowest)
            out += self._advance()
        return out, self.RETAIN

    def notify_at(self) -> datetime | None:
        if not self.partitions:
            return None
        return datetime.fromtimestamp(self._next_tick / 1000, UTC)

    def snapshot(self) -> AlertShardState:
        return self.state

    def _stream_clock(self) -> int | None:
        """The lowest clock of the partitions that delivered anything; None until known."""
        clocks = [self.state.partition_clocks.get(p, NEVER) for p in self.partitions]
        if not clocks or NEVER in clocks:
            return None
        live = [c for c in clocks if c < IDLE]
        return min(live) if live else None

    def _advance(self) -> list[AlertTransition]:
        out: list[AlertTransition] = []
        for key, ev in self.evaluators.items():
            now = self.state.clock
            if self.state.horizon > NEVER:
                now = max(now, self.state.horizon - self.rules[key].lateness_ms + 1)
            out += ev.advance(now)
        return out

    def _changes_through(self, at: int) -> list[AlertTransition]:
        """Apply the rule-log entries in force by ``at`` that this shard has not applied."""
        if self.feed is None:
            return []
        out: list[AlertTransition] = []
        for entry in self.feed.ensure(at).due(self.state.applied, at):
            key = entry.key
            new = self.feed.compiled(entry)
            old = self.rules.get(key)
            evaluator = self.evaluators.get(key)
            if old is not None and new is not None and old.identity == new.identity:
                assert evaluator is not None
                evaluator.rule = new.rule
            else:
                if evaluator is not None:
                    out += evaluator.retire(entry.effective_from)
                    del self.evaluators[key]
                    self.state.instances.pop(key, None)
                if new is not None:
                    self.evaluators[key] = new.evaluator(self.state.instances.setdefault(key, {}))
            self._set_rule(key, new)
            self.state.applied = entry.seq
        return out
