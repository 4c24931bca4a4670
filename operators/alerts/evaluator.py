"""Every instance of one rule in one shard, fed observations in event-time order.

An instance ignores a window it has already evaluated (``window_end <= last_eval``):
Bytewax can emit a final window twice (``../shared/BYTEWAX.md``, pitfall 1) and a
replay after recovery re-sends finals.

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

from dataclasses import replace
from typing import Any

from riffle.config.alerts import (
    AbsenceRule,
    AlertRule,
    AnomalyRule,
    ChangeRule,
    ForecastRule,
    ThresholdRule,
)
from riffle.operators.alerts.annotations import render_annotations
from riffle.operators.alerts.conditions import compare, outside
from riffle.operators.alerts.instances import (
    Instance,
    Interval,
    OpenWindow,
    Pending,
    instance_group,
    instance_id,
    merged_value,
)
from riffle.operators.alerts.machine import Machine, State
from riffle.operators.alerts.observations import Observation
from riffle.operators.alerts.transitions import AlertTransition

_JOIN_KEEP = 4
"""Forecast joins: most unmatched intervals or values an instance keeps."""


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
        group = instance_group(self.rule, obs.dims)
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
