"""Alert evaluation: one state machine per alert instance, driven by event time. Pure, no I/O.

```
Normal ──breach──▶ Pending ──breach, `for` elapsed──▶ Firing ──clear──▶ Recovering
  ▲                  │ clear                            ▲  │                │ clear and
  └──────────────────┘                                  │  └─breach─────────┘ keep_firing_for
  ◀─────────────────────────────────────────────────────┴───────────────────── elapsed
NoData: no window of the instance for `no_data_after`; the next window leaves it.
```

Time is the end of the window evaluated (ms since the epoch), never the wall
clock, so replaying the same windows gives the same transitions. An instance
ignores a window it has already evaluated (``window_end <= last_eval``): Bytewax
can emit a final window twice (``../shared/BYTEWAX.md``, pitfall 1) and a replay
after recovery re-sends finals.

An instance is one rule applied to one group of series (``group_by``); windows
of several series of one group are merged from their mergeable aggregates and
evaluated once a later window reaches the shard (a merged instance trails by
one window); an instance that is one series is evaluated on its window at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import orjson

from config.alerts import (
    AbsenceRule,
    AlertRule,
    AnomalyRule,
    ChangeRule,
    ThresholdRule,
    compare,
    render_annotations,
)
from operators.records import Dims, WindowResult

State = Literal["normal", "pending", "firing", "recovering", "nodata"]
STATES: tuple[State, ...] = ("normal", "pending", "firing", "recovering", "nodata")
ACTIVE: frozenset[str] = frozenset({"pending", "firing", "recovering", "nodata"})
"""States shown as active alerts."""


@dataclass(slots=True)
class Machine:
    """The state of one alert instance; a few ints, cheap to snapshot."""

    state: State = "normal"
    since: int = 0
    """Event time the current state was entered."""
    active_at: int | None = None
    """End of the first window of the current breach (Pending/Firing/Recovering)."""
    clear_at: int | None = None
    """End of the first clear window while Recovering."""
    last_seen: int | None = None
    """End of the newest window with data."""
    last_eval: int = -1
    """End of the newest window evaluated; older or equal ones are ignored."""

    def step(
        self, at: int, breached: bool, for_ms: int, keep_ms: int
    ) -> tuple[State, State] | None:
        """Evaluate the condition at event time ``at``; the ``(from, to)`` transition or None.

        Contract: Firing is entered only when every evaluation from ``active_at`` to
        ``at`` breached and ``at - active_at >= for_ms``; Recovering turns Normal only
        when the condition has been clear for ``keep_ms``.
        """
        before = self.state
        if breached:
            self.clear_at = None
            if before in ("normal", "nodata"):
                self.active_at = at
                self._enter("firing" if for_ms == 0 else "pending", at)
            elif before == "pending":
                assert self.active_at is not None
                if at - self.active_at >= for_ms:
                    self._enter("firing", at)
            elif before == "recovering":
                self._enter("firing", at)
        else:
            if before in ("pending", "nodata"):
                self.active_at = None
                self._enter("normal", at)
            elif before == "firing":
                if keep_ms == 0:
                    self.active_at = None
                    self._enter("normal", at)
                else:
                    self.clear_at = at
                    self._enter("recovering", at)
            elif before == "recovering":
                assert self.clear_at is not None
                if at - self.clear_at >= keep_ms:
                    self.active_at = self.clear_at = None
                    self._enter("normal", at)
        return None if self.state == before else (before, self.state)

    def no_data(self, at: int) -> tuple[State, State] | None:
        """The instance has had no window until ``at``: turn NoData (unless already)."""
        if self.state == "nodata":
            return None
        before = self.state
        self.active_at = self.clear_at = None
        self._enter("nodata", at)
        return before, "nodata"

    def _enter(self, state: State, at: int) -> None:
        self.state = state
        self.since = at


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """One change of state of one alert instance, the record every alert sink stores.

    ``transition_id`` is stable (tenant, rule, instance, event time, new state), so a
    replay writes the same rows and a notifier can use it as the dedup key.
    """

    tenant: str
    rule: str
    metric: str
    instance: str
    labels: tuple[tuple[str, str], ...]
    severity: str
    from_state: str
    to_state: str
    at: int
    """Event time (ms): the end of the window that caused the transition."""
    value: float | None
    active_at: int | None
    annotations: tuple[tuple[str, str], ...] = ()

    @property
    def transition_id(self) -> str:
        digest = hashlib.blake2b(
            orjson.dumps([self.tenant, self.rule, self.instance, self.at, self.to_state]),
            digest_size=12,
        )
        return digest.hexdigest()

    def to_json(self) -> bytes:
        data: dict[str, Any] = asdict(self)
        data["labels"] = dict(self.labels)
        data["annotations"] = dict(self.annotations)
        data["transition_id"] = self.transition_id
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> AlertTransition:
        data = orjson.loads(raw)
        data.pop("transition_id", None)
        data["labels"] = tuple(sorted(data["labels"].items()))
        data["annotations"] = tuple(sorted(data["annotations"].items()))
        return cls(**data)


def instance_id(tenant: str, rule: str, group: Dims) -> str:
    """A 16-hex-digit id of an alert instance, the same in every process."""
    return hashlib.blake2b(orjson.dumps([tenant, rule, group]), digest_size=8).hexdigest()


@dataclass(slots=True)
class Pending:
    """A merged window of several series of one group, waiting for a later window."""

    window_end: int
    count: int
    sum: float
    min: float | None
    max: float | None
    series: list[Dims] = field(default_factory=list)
    """Series merged so far: a re-emitted final of one of them is not added twice."""


@dataclass(slots=True)
class Instance:
    """One instance's machine and what its rule needs besides: the previous value
    (change rules) and a window being merged (grouped rules)."""

    tenant: str
    group: Dims
    machine: Machine = field(default_factory=Machine)
    previous: float | None = None
    merging: Pending | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """What the alert stage evaluates: a final window's value or a window's anomaly score."""

    tenant: str
    metric: str
    dims: Dims
    window_end: int
    value: float | None
    count: int = 0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None
    score: float | None = None

    @classmethod
    def of_window(cls, w: WindowResult) -> Observation:
        return cls(w.tenant, w.metric, w.dims, w.window_end, w.value, w.count, w.sum, w.min, w.max)


def group_of(rule: AlertRule, dims: Dims) -> Dims:
    """The instance's labels from a series' dimensions."""
    if rule.group_by is None:
        return dims
    keep = set(rule.group_by)
    return tuple(pair for pair in dims if pair[0] in keep)


def merged_value(aggregation: str, p: Pending) -> float | None:
    """The metric's value of a merged window (count, sum, avg, min, max only)."""
    if aggregation == "count":
        return float(p.count)
    if aggregation == "sum":
        return p.sum
    if aggregation == "avg":
        return p.sum / p.count if p.count else None
    if aggregation == "min":
        return p.min
    if aggregation == "max":
        return p.max
    return None


class RuleEvaluator:
    """Every instance of one rule in one shard; feed observations in event-time order.

    ``observe`` and ``advance`` return the transitions they cause. ``instances`` is the
    whole state (what a snapshot keeps).
    """

    def __init__(
        self,
        rule: AlertRule,
        aggregation: str,
        merges: bool,
        instances: dict[str, Instance] | None = None,
    ) -> None:
        self.rule = rule
        self.aggregation = aggregation
        self.merges = merges
        self.instances: dict[str, Instance] = instances if instances is not None else {}

    def observe(self, obs: Observation) -> list[AlertTransition]:
        """One window (or anomaly score) of one series."""
        group = group_of(self.rule, obs.dims)
        key = instance_id(obs.tenant, self.rule.name, group)
        inst = self.instances.get(key)
        if inst is None:
            inst = self.instances[key] = Instance(obs.tenant, group)
        if obs.window_end <= inst.machine.last_eval:
            return []
        if not self.merges or isinstance(self.rule, AnomalyRule):
            return self._evaluate(key, inst, obs.window_end, obs.value, obs.score)
        out: list[AlertTransition] = []
        p = inst.merging
        if p is not None and obs.window_end > p.window_end:
            out += self._flush(key, inst)
            p = None
        if p is None:
            inst.merging = Pending(obs.window_end, obs.count, obs.sum, obs.min, obs.max, [obs.dims])
        elif obs.window_end == p.window_end and obs.dims not in p.series:
            p.series.append(obs.dims)
            p.count += obs.count
            p.sum += obs.sum
            p.min = obs.min if p.min is None else p.min if obs.min is None else min(p.min, obs.min)
            p.max = obs.max if p.max is None else p.max if obs.max is None else max(p.max, obs.max)
        return out

    def advance(self, now: int) -> list[AlertTransition]:
        """Event time of the shard reached ``now``: flush merged windows that ended
        before it, then judge absence and NoData."""
        out: list[AlertTransition] = []
        for key, inst in self.instances.items():
            if inst.merging is not None and inst.merging.window_end < now:
                out += self._flush(key, inst)
            m = inst.machine
            if m.last_seen is None:
                continue
            silent = now - m.last_seen
            if isinstance(self.rule, AbsenceRule):
                if silent >= int(self.rule.after.total_seconds() * 1000):
                    change = m.step(now, True, self.rule.for_ms, self.rule.keep_firing_ms)
                    if change is not None:
                        out.append(self._record(inst, key, change, now, None))
            elif self.rule.no_data_ms is not None and silent >= self.rule.no_data_ms:
                change = m.no_data(now)
                if change is not None:
                    out.append(self._record(inst, key, change, now, None))
        return out

    def _flush(self, key: str, inst: Instance) -> list[AlertTransition]:
        p = inst.merging
        assert p is not None
        inst.merging = None
        return self._evaluate(key, inst, p.window_end, merged_value(self.aggregation, p), None)

    def _evaluate(
        self, key: str, inst: Instance, at: int, value: float | None, score: float | None
    ) -> list[AlertTransition]:
        m = inst.machine
        m.last_eval = at
        m.last_seen = at
        rule = self.rule
        breached: bool | None
        shown = value
        if isinstance(rule, ThresholdRule):
            breached = None if value is None else compare(rule.op, value, rule.value)
        elif isinstance(rule, ChangeRule):
            breached = None
            if value is not None and inst.previous is not None:
                delta = value - inst.previous
                if rule.mode == "percent":
                    delta = 100.0 * delta / abs(inst.previous) if inst.previous else float("nan")
                if delta == delta:
                    breached = compare(rule.op, delta, rule.value)
                    shown = delta
            if value is not None:
                inst.previous = value
        elif isinstance(rule, AnomalyRule):
            breached = None if score is None else score >= rule.above
            shown = score
        else:  # absence: data arrived, the condition is clear
            breached = False
        if breached is None:
            return []
        change = m.step(at, breached, rule.for_ms, rule.keep_firing_ms)
        return [] if change is None else [self._record(inst, key, change, at, shown)]

    def _record(
        self,
        inst: Instance,
        key: str,
        change: tuple[State, State],
        at: int,
        value: float | None,
    ) -> AlertTransition:
        rule = self.rule
        labels = dict(inst.group)
        labels.update(rule.labels)
        labels.update(
            alertname=rule.name, severity=rule.severity, metric=rule.metric, tenant=inst.tenant
        )
        context = {
            "labels": labels,
            "value": value,
            "state": change[1],
            "rule": rule.name,
            "metric": rule.metric,
            "threshold": getattr(rule, "value", getattr(rule, "above", None)),
        }
        return AlertTransition(
            tenant=inst.tenant,
            rule=rule.name,
            metric=rule.metric,
            instance=key,
            labels=tuple(sorted(labels.items())),
            severity=rule.severity,
            from_state=change[0],
            to_state=change[1],
            at=at,
            value=value,
            active_at=inst.machine.active_at,
            annotations=render_annotations(rule.annotations, context),
        )


def evaluate_series(
    rule: AlertRule, aggregation: str, merges: bool, observations: list[Observation]
) -> list[AlertTransition]:
    """Run one rule over observations sorted by window end (simulation, tests)."""
    ev = RuleEvaluator(rule, aggregation, merges)
    out: list[AlertTransition] = []
    for obs in sorted(observations, key=lambda o: o.window_end):
        out += ev.advance(obs.window_end)
        out += ev.observe(obs)
    return out
