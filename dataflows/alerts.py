"""The alert stage: final windows (and anomaly scores) → alert transitions, keyed by shard.

```
finals ──┐
         ├─▶ one item per (rule, series), keyed by the instance's shard ─▶ alerts ─▶ alert sink
scores ──┘                                   (stateful per shard)
```

A shard (``a07``) is chosen from the stable id of the alert instance (tenant,
rule, group labels), so every series of a group meets in one shard in every
process. The shard's state is its instances' machines
(:class:`~operators.alerts.machine.Machine`, a few ints each) and the newest window
end it has seen — its event-time clock, which drives absence and NoData —
and, when the flow passes the source partitions' clocks, the stream clock
that keeps those moving without windows. Tenant rules made through the API
are read from a versioned log; the logic is in :mod:`dataflows.alert_logic`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import bytewax.operators as op
import redis as redis_client
from bytewax.dataflow import Stream

from riffle.config.settings import Settings
from riffle.config.spec import PipelineSpec
from riffle.dataflows.alert_logic import (
    AlertLogic,
    AlertShardState,
    ClockReading,
    CompiledRule,
    FanOut,
    RuleFeed,
    RuleLog,
    compile_rules,
    shard_of,
)
from riffle.dataflows.outputs import FlowSink, Output, Writer, emit, warehouse_settings
from riffle.operators.alerts.transitions import AlertTransition
from riffle.operators.models.series import ModelRecord
from riffle.operators.records import WindowResult
from riffle.sinks.redis.alerts import RedisAlerts
from riffle.sinks.topics.alerts import alert_sender
from riffle.sinks.topics.target import TopicTarget
from riffle.sinks.warehouse.alert_history import WarehouseAlerts
from riffle.sinks.warehouse.engines import open_warehouse
from riffle.sources.topics import ensure_topics

ALERTS_TOPIC = "riffle.alerts"


def alert_stage(
    results: Stream[WindowResult],
    spec: PipelineSpec,
    *,
    shards: int,
    sink: Output[AlertTransition],
    scores: Stream[ModelRecord] | None = None,
    rule_log: RuleLog | None = None,
    clocks: Stream[ClockReading] | None = None,
    partitions: Sequence[str] = (),
    default_lateness_ms: int = 0,
    tick_ms: int = 1000,
) -> Stream[AlertTransition] | None:
    """Attach the alert stage to a flow's window results (and the model stage's
    records, for anomaly and forecast rules); ``None`` when the spec has no rules and
    no ``rule_log`` (tenant rules made through the API) is given. ``clocks`` (the
    source ``partitions``' clocks) keep absence and NoData moving when no window
    comes (see :mod:`dataflows.alert_logic`). Notifications are made by the notifier
    (:mod:`dataflows.notifier`) from the ``riffle.alerts`` topic."""
    rules = compile_rules(spec, default_lateness_ms=default_lateness_ms)
    if not rules and rule_log is None:
        return None
    feed = (
        None
        if rule_log is None
        else RuleFeed(rule_log, spec, default_lateness_ms=default_lateness_ms)
    )
    fan = FanOut(rules, shards, feed, {m.name: m.window_ms for m in spec.metrics})
    keyed = op.flat_map("alert_windows", results, fan.window)
    if scores is not None:
        keyed = op.merge("alert_inputs", keyed, op.flat_map("alert_scores", scores, fan.model))
    if clocks is not None:
        keyed = op.merge("alert_clocked", keyed, op.flat_map("alert_clocks", clocks, fan.clock))
    parts = list(partitions) if clocks is not None else []
    transitions = op.key_rm(
        "alert_drop_key",
        op.stateful_batch(
            "alerts",
            keyed,
            lambda resume: AlertLogic(rules, resume, feed=feed, partitions=parts, tick_ms=tick_ms),
        ),
    )
    emit("alert_sink", transitions, sink)
    return transitions


class AlertSink(FlowSink[AlertTransition]):
    """Transitions to the ``alerts`` table of ``warehouse`` (settings naming either engine,
    or a DuckDB file), Redis (active alerts) and, with ``topic``, the alerts topic (Kafka
    or Pub/Sub). Every write is idempotent (keyed by
    ``transition_id``, or guarded by event time in Redis), so a retried batch or a
    replay after recovery leaves the same rows."""

    def __init__(
        self,
        warehouse: Settings | Path | None,
        redis: tuple[str, str] | None = None,
        topic: TopicTarget | None = None,
        give_up_s: float = 300.0,
        topic_partitions: int = 4,
    ) -> None:
        super().__init__(give_up_s=give_up_s)
        self.warehouse = None if warehouse is None else warehouse_settings(warehouse)
        self.redis = redis
        self.topic = topic
        self.topic_partitions = topic_partitions

    def writers(self, part: str) -> list[Writer[AlertTransition]]:
        table = None if self.warehouse is None else WarehouseAlerts(open_warehouse(self.warehouse))
        hot = (
            None
            if self.redis is None
            else RedisAlerts(redis_client.Redis.from_url(self.redis[0]), self.redis[1])
        )
        out: list[Writer[AlertTransition]] = []
        if self.topic is not None:
            if self.topic.broker == "kafka":
                # Created here, not before the flow starts: creating a topic can take
                # seconds, and the flow's start-up should not wait for it. (Pub/Sub
                # topics are made by `riffle topics create`.)
                ensure_topics(self.topic.address, [self.topic.topic], self.topic_partitions)
            out.append(alert_sender(self.topic))
        out += [] if table is None else [table.write]
        return out if hot is None else [*out, hot.write]


__all__ = [
    "ALERTS_TOPIC",
    "AlertLogic",
    "AlertShardState",
    "AlertSink",
    "ClockReading",
    "CompiledRule",
    "alert_stage",
    "compile_rules",
    "shard_of",
]
