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

Absence and NoData are stamped with the event time they became due
(``last_seen + after``), not with the time the shard noticed, so a clock that
jumps (a replayed backlog) and a clock that creeps (the wall-clock fallback of
idle sources) give the same transitions.

Partial values (``evaluate: partial``) can only raise an instance, through a
provisional copy of its machine; the final value of the window decides: it
steps the real machine, and if the outcome differs from what the partial
announced, one transition from the announced state to the real one follows at
the same event time. A partial is evaluated only once the previous window's
final has been, so at most one provisional raise is outstanding.

Forecast rules join two inputs per instance by window end: the interval the
forecaster issued for a window (one window earlier) and the window's final
value, in whichever order they arrive.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any, Literal

import orjson

from riffle.config.alerts import (
    AbsenceRule,
    AlertRule,
    AnomalyRule,
    ChangeRule,
    ForecastRule,
    ThresholdRule,
    compare,
    render_annotations,
)
from riffle.operators.records import Dims, WindowResult

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


@lru_cache(maxsize=1 << 16)
def instance_id(tenant: str, rule: str, group: Dims) -> str:
    """A 16-hex-digit id of an alert instance, the same in every process (memoised: the
    fan-out and the evaluator both need it for every window)."""
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


Aggregate = tuple[int, float, float | None, float | None]
"""``(count, sum, min, max)`` of one series' window so far."""


@dataclass(slots=True)
class OpenWindow:
    """The newest partial aggregates of each series of a group, for one open window."""

    window_end: int
    series: dict[Dims, Aggregate] = field(default_factory=dict)

    def merged(self) -> Pending:
        values = list(self.series.values())
        lows = [v[2] for v in values if v[2] is not None]
        highs = [v[3] for v in values if v[3] is not None]
        return Pending(
            self.window_end,
            sum(v[0] for v in values),
            sum(v[1] for v in values),
            min(lows) if lows else None,
            max(highs) if highs else None,
        )


Interval = tuple[float, float, float]
"""``(mean, low, high)`` of a forecast for one window."""

_JOIN_KEEP = 4
"""Forecast joins: most unmatched intervals or values an instance keeps."""


@dataclass(slots=True)
class Instance:
    """One instance's machine and what its rule needs besides: the previous value
    (change rules), values by window end (change against a period), a window being
    merged (grouped rules), a provisional machine (partials) and the two halves of a
    forecast join."""

    tenant: str
    group: Dims
    machine: Machine = field(default_factory=Machine)
    previous: float | None = None
    merging: Pending | None = None
    history: dict[int, float] | None = None
    shown: Machine | None = None
    """The machine as announced by a partial raise, until the window's final."""
    expect: dict[int, Interval] | None = None
    waiting: dict[int, float] | None = None
    open: OpenWindow | None = None
    """Partials of the open window of a group (grouped rules that evaluate partials)."""


@dataclass(frozen=True, slots=True)
class Observation:
    """What the alert stage evaluates: a window's value (final or partial), a window's
    anomaly score, or the forecast interval of a window still to come."""

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
    final: bool = True
    interval: Interval | None = None
    """The forecast for the window ending at ``window_end`` (value is then None)."""
    history: int = 0
    """One-step forecasts the forecaster had scored when it issued ``interval``."""

    @classmethod
    def of_window(cls, w: WindowResult) -> Observation:
        return cls(
            w.tenant,
            w.metric,
            w.dims,
            w.window_end,
            w.value,
            w.count,
            w.sum,
            w.min,
            w.max,
            final=w.is_final,
        )


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


def outside(side: str, value: float, interval: Interval) -> bool:
    """Whether ``value`` breaches a forecast interval on ``side`` (outside, above, below)."""
    _mean, low, high = interval
    if side == "above":
        return value > high
    if side == "below":
        return value < low
    return value > high or value < low


class RuleEvaluator:
    """Every instance of one rule in one shard; feed observations in event-time order.

    ``observe``, ``advance`` and ``retire`` return the transitions they cause.
    ``instances`` is the whole state (what a snapshot keeps). ``window_ms`` (the
    metric's window) is needed by rules that evaluate partial values.
    """

    def __init__(
        self,
        rule: AlertRule,
        aggregation: str,
        merges: bool,
        instances: dict[str, Instance] | None = None,
        *,
        window_ms: int | None = None,
    ) -> None:
        if rule.evaluate == "partial" and window_ms is None:
            raise ValueError("a rule that evaluates partial windows needs window_ms")
        self.rule = rule
        self.aggregation = aggregation
        self.merges = merges
        self.window_ms = window_ms or 0
        self.instances: dict[str, Instance] = instances if instances is not None else {}

    def observe(self, obs: Observation) -> list[AlertTransition]:
        """One window (final or partial), anomaly score or forecast interval of one series."""
        group = group_of(self.rule, obs.dims)
        key = instance_id(obs.tenant, self.rule.name, group)
        inst = self.instances.get(key)
        if inst is None:
            inst = self.instances[key] = Instance(obs.tenant, group)
        if obs.window_end <= inst.machine.last_eval:
            return []
        if isinstance(self.rule, ForecastRule):
            return self._join(key, inst, obs)
        if not obs.final:
            return self._partial(key, inst, obs)
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
        """Every window ending before ``now`` has reached the shard: flush merged windows
        that ended before it, then judge absence and NoData, stamped with the event time
        each became due."""
        out: list[AlertTransition] = []
        rule = self.rule
        for key, inst in self.instances.items():
            if inst.merging is not None and inst.merging.window_end < now:
                out += self._flush(key, inst)
            m = inst.machine
            if m.last_seen is None:
                continue
            if isinstance(rule, AbsenceRule):
                due = m.last_seen + int(rule.after.total_seconds() * 1000)
                if due < now:
                    out += self._announce(inst, key, m.step(due, True, rule.for_ms, 0), due, None)
                    fire_at = None if m.active_at is None else m.active_at + rule.for_ms
                    if m.state == "pending" and fire_at is not None and fire_at < now:
                        change = m.step(fire_at, True, rule.for_ms, 0)
                        out += self._announce(inst, key, change, fire_at, None)
            elif rule.no_data_ms is not None:
                due = m.last_seen + rule.no_data_ms
                if due < now and m.state != "nodata":
                    out += self._announce(inst, key, m.no_data(due), due, None)
        return out

    def retire(self, at: int) -> list[AlertTransition]:
        """The rule stops at event time ``at`` (deleted or replaced): every instance that is
        not Normal turns Normal at ``at``; the instances are forgotten."""
        out: list[AlertTransition] = []
        for key, inst in self.instances.items():
            state = inst.shown.state if inst.shown is not None else inst.machine.state
            if state != "normal":
                out.append(self._record(inst, key, (state, "normal"), at, None))
        self.instances.clear()
        return out

    def _flush(self, key: str, inst: Instance) -> list[AlertTransition]:
        p = inst.merging
        assert p is not None
        inst.merging = None
        if inst.open is not None and inst.open.window_end <= p.window_end:
            inst.open = None
        return self._evaluate(key, inst, p.window_end, merged_value(self.aggregation, p), None)

    def _condition(
        self, inst: Instance, at: int, value: float | None, score: float | None, commit: bool
    ) -> tuple[bool | None, float | None]:
        """Whether the rule breaches at ``at`` (None: cannot be judged) and the value shown;
        ``commit`` records the value as a later reference (finals only)."""
        rule = self.rule
        if isinstance(rule, ThresholdRule):
            return (None if value is None else compare(rule.op, value, rule.value)), value
        if isinstance(rule, ChangeRule):
            period = rule.period_ms
            if period is None:
                reference = inst.previous
                if commit and value is not None:
                    inst.previous = value
            else:
                history = inst.history if inst.history is not None else {}
                reference = history.get(at - period)
                if commit and value is not None:
                    history[at] = value
                    while (oldest := next(iter(history))) <= at - period:
                        del history[oldest]  # inserted in time order: the oldest is first
                    inst.history = history
            if value is None or reference is None:
                return None, value
            delta = value - reference
            if rule.mode == "percent":
                if not reference:
                    return None, value
                delta = 100.0 * delta / abs(reference)
            return compare(rule.op, delta, rule.value), delta
        if isinstance(rule, AnomalyRule):
            return (None if score is None else score >= rule.above), score
        return False, value  # absence: data arrived, the condition is clear

    def _evaluate(
        self, key: str, inst: Instance, at: int, value: float | None, score: float | None
    ) -> list[AlertTransition]:
        m = inst.machine
        m.last_eval = at
        m.last_seen = at
        breached, shown = self._condition(inst, at, value, score, commit=True)
        if breached is None and m.state == "nodata":
            breached = False  # data is back, even if it cannot be judged yet
        if breached is None:
            return self._settle(key, inst, None, at, shown)
        change = m.step(at, breached, self.rule.for_ms, self.rule.keep_firing_ms)
        return self._settle(key, inst, change, at, shown)

    def _settle(
        self,
        key: str,
        inst: Instance,
        change: tuple[State, State] | None,
        at: int,
        value: float | None,
        interval: Interval | None = None,
    ) -> list[AlertTransition]:
        """The transitions of a final evaluation, reconciled with a provisional raise."""
        announced = inst.shown
        inst.shown = None
        if announced is None:
            return self._announce(inst, key, change, at, value, interval)
        m = inst.machine
        if change is not None and (change[1], at) == (announced.state, announced.since):
            return []  # the final confirms what the partial announced
        if m.state == announced.state:
            return []
        return [self._record(inst, key, (announced.state, m.state), at, value, interval)]

    def _partial(self, key: str, inst: Instance, obs: Observation) -> list[AlertTransition]:
        """A partial value may raise the announced state; it never lowers it."""
        at, m = obs.window_end, inst.machine
        if self.rule.evaluate != "partial" or at - self.window_ms > m.last_eval:
            return []
        value = obs.value
        if self.merges:
            w = inst.open
            if w is None or at > w.window_end:
                w = inst.open = OpenWindow(at)
            elif at < w.window_end:
                return []
            w.series[obs.dims] = (obs.count, obs.sum, obs.min, obs.max)
            value = merged_value(self.aggregation, w.merged())
        breached, shown = self._condition(inst, at, value, None, commit=False)
        if not breached:
            return []
        base = inst.shown if inst.shown is not None else replace(m)
        change = base.step(at, True, self.rule.for_ms, self.rule.keep_firing_ms)
        if change is None:
            return []
        inst.shown = base
        return [self._record(inst, key, change, at, shown, machine=base)]

    def _join(self, key: str, inst: Instance, obs: Observation) -> list[AlertTransition]:
        """Forecast rules: pair each window's final value with the interval issued for it."""
        assert isinstance(self.rule, ForecastRule)
        if obs.interval is not None:
            if obs.history < self.rule.min_history:
                return []
            inst.expect = _bounded(inst.expect, obs.window_end, obs.interval)
        elif obs.final and obs.value is not None:
            inst.waiting = _bounded(inst.waiting, obs.window_end, obs.value)
            m = inst.machine
            m.last_seen = max(m.last_seen or obs.window_end, obs.window_end)
        else:
            return []
        expect, waiting = inst.expect or {}, inst.waiting or {}
        out: list[AlertTransition] = []
        for end in sorted(expect.keys() & waiting.keys()):
            interval, value = expect.pop(end), waiting.pop(end)
            m = inst.machine
            if end <= m.last_eval:
                continue
            m.last_eval = end
            breached = outside(self.rule.side, value, interval)
            change = m.step(end, breached, self.rule.for_ms, self.rule.keep_firing_ms)
            out += self._settle(key, inst, change, end, value, interval)
        return out

    def _announce(
        self,
        inst: Instance,
        key: str,
        change: tuple[State, State] | None,
        at: int,
        value: float | None,
        interval: Interval | None = None,
    ) -> list[AlertTransition]:
        """``change`` as a transition; a provisional raise still announced (NoData came
        before the window's final) is where the change starts from."""
        if change is None:
            return []
        if inst.shown is not None:
            change = (inst.shown.state, change[1])
            inst.shown = None
            if change[0] == change[1]:
                return []
        return [self._record(inst, key, change, at, value, interval)]

    def _record(
        self,
        inst: Instance,
        key: str,
        change: tuple[State, State],
        at: int,
        value: float | None,
        interval: Interval | None = None,
        *,
        machine: Machine | None = None,
    ) -> AlertTransition:
        """``machine``: the (provisional) machine that made the change; the instance's own
        by default."""
        rule = self.rule
        labels = dict(inst.group)
        labels.update(rule.labels)
        labels.update(
            alertname=rule.name, severity=rule.severity, metric=rule.metric, tenant=inst.tenant
        )
        expected, lower, upper = interval if interval is not None else (None, None, None)
        context = {
            "labels": labels,
            "value": value,
            "state": change[1],
            "rule": rule.name,
            "metric": rule.metric,
            "threshold": getattr(rule, "value", getattr(rule, "above", None)),
            "expected": expected,
            "lower": lower,
            "upper": upper,
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
            active_at=(machine or inst.machine).active_at,
            annotations=render_annotations(rule.annotations, context),
        )


def _bounded(items: dict[int, Any] | None, end: int, item: Any) -> dict[int, Any]:
    """``items`` with ``end`` set, keeping the newest :data:`_JOIN_KEEP` entries."""
    out = items if items is not None else {}
    out[end] = item
    while len(out) > _JOIN_KEEP:
        del out[min(out)]
    return out


def evaluate_series(
    rule: AlertRule,
    aggregation: str,
    merges: bool,
    observations: list[Observation],
    *,
    window_ms: int | None = None,
    until: int | None = None,
) -> list[AlertTransition]:
    """Run one rule over observations sorted by window end (simulation, tests).

    The clock advances with final windows, as in the alert stage; at the end it is
    advanced once more, to ``until`` (every window ending before it is among the
    observations) or one ms past the last window, so absence and NoData due by then
    are judged.
    """
    ev = RuleEvaluator(rule, aggregation, merges, window_ms=window_ms)
    out: list[AlertTransition] = []
    clock = -1
    for obs in sorted(observations, key=lambda o: o.window_end):
        if obs.final and obs.interval is None and obs.window_end > clock:
            clock = obs.window_end
            out += ev.advance(clock)
        out += ev.observe(obs)
    if clock >= 0 or until is not None:
        out += ev.advance(max(clock + 1, until or 0))
    return out
