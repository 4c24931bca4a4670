"""The alert stage: final windows (and anomaly scores) → alert transitions, keyed by shard.

```
finals ──┐
         ├─▶ one item per (rule, series), keyed by the instance's shard ─▶ alerts ─▶ alert sink
scores ──┘                                   (stateful per shard)
```

A shard (``a07``) is chosen from the stable id of the alert instance (tenant,
rule, group labels), so every series of a group meets in one shard in every
process. The shard's state is its instances' machines
(:class:`~operators.alerts.Machine`, a few ints each) and the newest window
end it has seen — its event-time clock, which drives absence and NoData. That
clock only moves when a window reaches the shard: an instance alone in a
shard whose series stops is judged when any other window reaches the shard.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import bytewax.operators as op
import redis as redis_client
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition

from config.alerts import AlertRule, AnomalyRule
from config.settings import Settings
from config.spec import PipelineSpec
from dataflows.outputs import _Partition, warehouse_settings
from operators.alerts import (
    AlertTransition,
    Instance,
    Observation,
    RuleEvaluator,
    group_of,
    instance_id,
)
from operators.models.series import AnomalyRecord, ModelRecord
from operators.records import WindowResult
from sinks.alert_store import AlertProducer, RedisAlerts, WarehouseAlerts
from sinks.warehouses import open_warehouse
from sources.topics import ensure_topics

ALERTS_TOPIC = "riffle.alerts"


@dataclass(frozen=True)
class CompiledRule:
    """A rule with what the stage needs from its metric."""

    rule: AlertRule
    aggregation: str
    window_ms: int
    merges: bool


@dataclass
class AlertShardState:
    """What a shard's snapshot holds: instances per rule and the shard's clock."""

    instances: dict[str, dict[str, Instance]] = field(default_factory=dict)
    clock: int = -1


def compile_rules(spec: PipelineSpec) -> dict[str, CompiledRule]:
    """The spec's rules by name, with their metric's aggregation and window length."""
    out = {}
    for rule in spec.alerts:
        metric = spec.metric(rule.metric)
        assert metric is not None  # checked on load
        merges = rule.group_by is not None and set(rule.group_by) != set(metric.dimensions)
        out[rule.name] = CompiledRule(rule, metric.aggregation, metric.window_ms, merges)
    return out


def shard_of(tenant: str, rule: AlertRule, obs: Observation, shards: int) -> str:
    """The alert shard of the instance ``obs`` belongs to (stable, never ``hash``)."""
    key = instance_id(tenant, rule.name, group_of(rule, obs.dims))
    return f"a{int(key[:8], 16) % shards:03d}"


class AlertLogic(StatefulBatchLogic[tuple[str, Observation], AlertTransition, AlertShardState]):
    """One shard's alert instances; emits a transition whenever one changes state.

    Items are evaluated in order of window end within a batch; before each new
    window end the shard's clock advances (flushing merged windows, judging
    absence and NoData). A window at or before an instance's last evaluation is
    ignored, so re-emitted or replayed finals cause no second transition.
    """

    def __init__(self, rules: Mapping[str, CompiledRule], resume: AlertShardState | None) -> None:
        self.state = resume if resume is not None else AlertShardState()
        self.evaluators = {
            name: RuleEvaluator(
                c.rule, c.aggregation, c.merges, self.state.instances.setdefault(name, {})
            )
            for name, c in rules.items()
        }

    def on_batch(self, values: list[tuple[str, Observation]]) -> tuple[list[AlertTransition], bool]:
        out: list[AlertTransition] = []
        for name, obs in sorted(values, key=lambda v: v[1].window_end):
            evaluator = self.evaluators.get(name)
            if evaluator is None:  # a rule removed from the spec since the snapshot
                continue
            if obs.window_end > self.state.clock:
                self.state.clock = obs.window_end
                for ev in self.evaluators.values():
                    out += ev.advance(obs.window_end)
            out += evaluator.observe(obs)
        return out, self.RETAIN

    def snapshot(self) -> AlertShardState:
        return self.state


def alert_stage(
    results: Stream[WindowResult],
    spec: PipelineSpec,
    *,
    shards: int,
    sink: Sink[AlertTransition],
    scores: Stream[ModelRecord] | None = None,
) -> Stream[AlertTransition] | None:
    """Attach the alert stage to a flow's window results (and the model stage's
    records, for anomaly rules); ``None`` when the spec has no rules. Notifications
    are made by the notifier (``dataflows.notifier``) from the ``riffle.alerts`` topic."""
    rules = compile_rules(spec)
    if not rules:
        return None
    by_metric: dict[str, list[CompiledRule]] = {}
    for c in rules.values():
        by_metric.setdefault(c.rule.metric, []).append(c)

    def fan_out_window(w: WindowResult) -> list[tuple[str, tuple[str, Observation]]]:
        if not w.is_final or w.retracted:
            return []
        obs = Observation.of_window(w)
        return [
            (shard_of(w.tenant, c.rule, obs, shards), (c.rule.name, obs))
            for c in by_metric.get(w.metric, [])
            if not isinstance(c.rule, AnomalyRule)
        ]

    def fan_out_score(r: ModelRecord) -> list[tuple[str, tuple[str, Observation]]]:
        if not isinstance(r, AnomalyRecord):
            return []
        out = []
        for c in by_metric.get(r.metric, []):
            if isinstance(c.rule, AnomalyRule):
                obs = Observation(
                    r.tenant,
                    r.metric,
                    r.dims,
                    r.window_start + c.window_ms,
                    r.result.value,
                    score=r.result.score,
                )
                out.append((shard_of(r.tenant, c.rule, obs, shards), (c.rule.name, obs)))
        return out

    keyed = op.flat_map("alert_windows", results, fan_out_window)
    if scores is not None:
        keyed = op.merge("alert_inputs", keyed, op.flat_map("alert_scores", scores, fan_out_score))
    transitions = op.key_rm(
        "alert_drop_key",
        op.stateful_batch("alerts", keyed, lambda resume: AlertLogic(rules, resume)),
    )
    op.output("alert_sink", transitions, sink)
    return transitions


class AlertSink(DynamicSink[AlertTransition]):
    """Transitions to the ``alerts`` table of ``warehouse`` (settings naming either engine,
    or a DuckDB file), Redis (active alerts) and, with ``kafka``
    (servers, topic), the ``riffle.alerts`` topic. Every write is idempotent (keyed by
    ``transition_id``, or guarded by event time in Redis), so a retried batch or a
    replay after recovery leaves the same rows."""

    def __init__(
        self,
        warehouse: Settings | Path | None,
        redis: tuple[str, str] | None = None,
        kafka: tuple[str, str] | None = None,
        give_up_s: float = 300.0,
        topic_partitions: int = 4,
    ) -> None:
        self.warehouse = None if warehouse is None else warehouse_settings(warehouse)
        self.redis = redis
        self.kafka = kafka
        self.give_up_s = give_up_s
        self.topic_partitions = topic_partitions

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[AlertTransition]:
        table = None if self.warehouse is None else WarehouseAlerts(open_warehouse(self.warehouse))
        hot = (
            None
            if self.redis is None
            else RedisAlerts(redis_client.Redis.from_url(self.redis[0]), self.redis[1])
        )
        producer = None
        if self.kafka is not None:
            # Created here, not before the flow starts: creating a topic can take
            # seconds, and the flow's start-up should not wait for it.
            ensure_topics(self.kafka[0], [self.kafka[1]], self.topic_partitions)
            producer = AlertProducer(*self.kafka)

        def write(items: list[AlertTransition]) -> None:
            if producer is not None:
                producer.send(items)
            if table is not None:
                table.write(items)
            if hot is not None:
                hot.write(items)

        return _Partition("alerts", write, self.give_up_s)


__all__ = ["ALERTS_TOPIC", "AlertLogic", "AlertSink", "alert_stage", "compile_rules"]
