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
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition

from config.spec import PipelineSpec
from dataflows.alert_logic import (
    AlertLogic,
    AlertShardState,
    CompiledRule,
    FanOut,
    PartitionClock,
    RuleFeed,
    RuleLog,
    compile_rules,
    shard_of,
)
from dataflows.outputs import _Partition
from operators.alerts import AlertTransition
from operators.models.series import ModelRecord
from operators.records import WindowResult
from sinks.alert_store import AlertProducer, DuckDBAlerts, RedisAlerts
from sinks.silences import SilenceStore
from sinks.webhook import RedisUndelivered, WebhookChannel
from sources.topics import ensure_topics

ALERTS_TOPIC = "riffle.alerts"


def alert_stage(
    results: Stream[WindowResult],
    spec: PipelineSpec,
    *,
    shards: int,
    sink: Sink[AlertTransition],
    scores: Stream[ModelRecord] | None = None,
    notify: Sink[AlertTransition] | None = None,
    rule_log: RuleLog | None = None,
    clocks: Stream[PartitionClock] | None = None,
    partitions: Sequence[str] = (),
    default_lateness_ms: int = 0,
    tick_ms: int = 1000,
) -> Stream[AlertTransition] | None:
    """Attach the alert stage to a flow's window results (and the model stage's
    records, for anomaly and forecast rules); ``None`` when the spec has no rules and
    no ``rule_log`` (tenant rules made through the API) is given. ``clocks`` (the
    source ``partitions``' clocks) keep absence and NoData moving when no window
    comes (see :mod:`dataflows.alert_logic`). ``notify`` (e.g. :class:`WebhookSink`)
    gets every transition too, after the stage."""
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
    op.output("alert_sink", transitions, sink)
    if notify is not None:
        op.output("alert_notify", transitions, notify)
    return transitions


class AlertSink(DynamicSink[AlertTransition]):
    """Transitions to the ``alerts`` table, Redis (active alerts) and, with ``kafka``
    (servers, topic), the ``riffle.alerts`` topic. Every write is idempotent (keyed by
    ``transition_id``, or guarded by event time in Redis), so a retried batch or a
    replay after recovery leaves the same rows."""

    def __init__(
        self,
        warehouse: Path | None,
        redis: tuple[str, str] | None = None,
        kafka: tuple[str, str] | None = None,
        give_up_s: float = 300.0,
        topic_partitions: int = 4,
    ) -> None:
        self.warehouse = warehouse
        self.redis = redis
        self.kafka = kafka
        self.give_up_s = give_up_s
        self.topic_partitions = topic_partitions

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[AlertTransition]:
        table = None if self.warehouse is None else DuckDBAlerts(self.warehouse)
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


class WebhookSink(DynamicSink[AlertTransition]):
    """Notifications of transitions to a webhook (:class:`~sinks.webhook.WebhookChannel`);
    with ``redis`` (url, prefix) silences (:class:`~sinks.silences.SilenceStore`) are
    applied before sending and undelivered ones go to
    :class:`~sinks.webhook.RedisUndelivered`. At-least-once: a restart may re-send
    a notification with the same ``dedup_key``."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        redis: tuple[str, str] | None = None,
        timeout_s: float = 5.0,
        attempts: int = 5,
        backoff_s: float = 0.5,
    ) -> None:
        self.url = url
        self.secret = secret
        self.redis = redis
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[AlertTransition]:
        dead = silences = None
        if self.redis is not None:
            client = redis_client.Redis.from_url(self.redis[0])
            dead = RedisUndelivered(client, self.redis[1])
            silences = SilenceStore(client, self.redis[1]).mutes
        channel = WebhookChannel(
            self.url,
            self.secret,
            timeout_s=self.timeout_s,
            attempts=self.attempts,
            backoff_s=self.backoff_s,
            dead_letter=dead,
            silenced=silences,
        )

        def write(items: list[AlertTransition]) -> None:
            channel.notify(items)

        return _Partition("webhook", write, give_up_s=0.0)


__all__ = [
    "ALERTS_TOPIC",
    "AlertLogic",
    "AlertShardState",
    "AlertSink",
    "CompiledRule",
    "PartitionClock",
    "WebhookSink",
    "alert_stage",
    "compile_rules",
    "shard_of",
]
