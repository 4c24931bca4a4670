"""The alert stage end to end: windows through Bytewax to the ``alerts`` table, Redis and
the ``riffle.alerts`` topic (real Tansu), read back by the API; same transitions in every
run mode and across an abort and resume from recovery."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
import pytest
import redis
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from riffle.api.app import create_app
from riffle.config.spec import parse_spec
from riffle.dataflows.alerts import AlertSink, alert_stage, compile_rules
from riffle.operators.alerts.evaluator import RuleEvaluator
from riffle.operators.alerts.observations import Observation
from riffle.operators.alerts.transitions import AlertTransition
from riffle.operators.records import WindowResult
from riffle.sinks.redis.live import live_key
from riffle.sinks.topics.target import TopicTarget
from riffle.stack import free_port
from tests.api_support import keyed_client
from tests.conftest import RedisTarget
from tests.warehouse_fixtures import WarehouseTarget

MIN = 60_000
SPEC = """
version: 1
event_types: {view: {}}
dimensions: {country: {path: props.country}}
metrics:
  - name: views
    events: [view]
    aggregation: count
    dimensions: [country]
    window: 1m
alerts:
  - name: views_high
    kind: threshold
    metric: views
    value: 100
    for: 2m
    keep_firing_for: 1m
    severity: critical
    labels: {team: web}
    annotations: {summary: "{{ labels.country }}: {{ value }} views"}
  - name: views_total_high
    kind: threshold
    metric: views
    value: 400
    group_by: []
  - name: views_gone
    kind: absence
    metric: views
    after: 3m
"""


def _window(country: str, minute: int, value: int) -> WindowResult:
    start = minute * MIN
    v = float(value)
    return WindowResult(
        "t1", "views", (("country", country),), start, start + MIN, value, v, v, v, v, True, 1
    )


def _windows() -> list[WindowResult]:
    """de spikes in minutes 5-9; fr stops after minute 14; both run to minute 24 otherwise."""
    out = []
    for m in range(25):
        out.append(_window("de", m, 500 if 5 <= m <= 9 else 50))
        if m < 15:
            out.append(_window("fr", m, 60))
        out.append(_window("de", m, 500 if 5 <= m <= 9 else 50))  # re-emitted final
    return out


def _expected() -> list[AlertTransition]:
    """What the pure evaluators say with one shard (one clock for every instance)."""
    spec = parse_spec(SPEC)
    evs = [RuleEvaluator(c.rule, c.aggregation, c.merges) for c in compile_rules(spec).values()]
    out: list[AlertTransition] = []
    for w in _windows():
        for ev in evs:
            out += ev.advance(w.window_end)
        for ev in evs:
            out += ev.observe(Observation.of_window(w))
    return out


def _run(
    shards: int,
    sink: AlertSink | None,
    mode: str = "single",
    items: list[Any] | None = None,
    recovery: RecoveryConfig | None = None,
) -> list[AlertTransition]:
    spec = parse_spec(SPEC)
    got: list[AlertTransition] = []
    flow = Dataflow("alerts_test")
    results = op.input("in", flow, TestingSource(items or _windows(), batch_size=7))
    out = alert_stage(results, spec, shards=shards, sink=sink or TestingSink([]))
    assert out is not None
    op.output("collect", out, TestingSink(got))
    if mode == "single":
        run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
    elif mode == "cluster_of_one":
        cluster_main(flow, [f"127.0.0.1:{free_port()}"], 0)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=2)
    return got


def _key(t: AlertTransition) -> tuple[Any, ...]:
    return (t.rule, dict(t.labels).get("country", ""), t.at, t.to_state)


def test_stage_matches_the_pure_evaluators_with_one_shard() -> None:
    got = _run(1, None)
    expected = _expected()
    assert sorted(map(_key, got)) == sorted(map(_key, expected))
    assert got and Counter(t.transition_id for t in got).most_common(1)[0][1] == 1
    keys = set(map(_key, got))
    assert ("views_high", "de", 6 * MIN, "pending") in keys
    assert ("views_high", "de", 8 * MIN, "firing") in keys
    assert ("views_high", "de", 11 * MIN, "recovering") in keys
    assert ("views_high", "de", 12 * MIN, "normal") in keys
    assert ("views_total_high", "", 6 * MIN, "firing") in keys
    assert ("views_gone", "fr", 18 * MIN, "firing") in keys


@pytest.mark.parametrize("mode", ["single", "cluster_of_one", "two_workers"])
def test_every_run_mode_gives_the_same_transitions(mode: str) -> None:
    threshold = {k for k in map(_key, _expected()) if k[0] != "views_gone"}
    got = {k for k in map(_key, _run(4, None, mode)) if k[0] != "views_gone"}
    assert got == threshold


def test_abort_and_resume_neither_drops_nor_invents_a_transition(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    items: list[Any] = _windows()
    items.insert(len(items) // 2, TestingSource.ABORT())
    first = _run(4, None, items=items, recovery=recovery)
    second = _run(4, None, items=items, recovery=recovery)
    once = {t.transition_id for t in _run(4, None)}
    assert {t.transition_id for t in first + second} == once


def _topic_values(servers: str, topic: str) -> list[bytes]:
    consumer = Consumer(
        {"bootstrap.servers": servers, "group.id": "t", "enable.partition.eof": True}
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    values, pending = [], set(parts)
    try:
        while pending:
            msg = consumer.poll(10)
            assert msg is not None, "the alerts topic did not answer"
            if msg.error():
                pending.discard(msg.partition())
                continue
            values.append(msg.value())
    finally:
        consumer.close()
    return values


def test_transitions_reach_the_table_redis_topic_and_api(
    tmp_path: Path,
    redis_url: RedisTarget,
    kafka_broker: str,
    topic_factory: Callable[..., str],
    warehouse_target: WarehouseTarget,
) -> None:
    warehouse_target.open().init()
    prefix = f"{redis_url.prefix}-alerts"
    topic = topic_factory(partitions=2, prefix="alerts")
    sink = AlertSink(
        warehouse_target.settings(),
        redis=(redis_url.url, prefix),
        topic=TopicTarget("kafka", kafka_broker, topic),
        give_up_s=20,
    )
    got = _run(1, sink)
    got += _run(1, sink)  # a full replay writes the same rows again

    on_topic = [AlertTransition.from_json(v) for v in _topic_values(kafka_broker, topic)]
    assert {t.transition_id for t in on_topic} == {t.transition_id for t in got}
    # The live stream holds each transition once, in order, though the replay wrote it again.
    live = redis.Redis.from_url(redis_url.url).xrange(live_key(prefix, "t1"))
    streamed = [orjson.loads(fields[b"a"])["transition_id"] for _, fields in live]
    assert streamed == list(dict.fromkeys(t.transition_id for t in got))

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC)
    settings = warehouse_target.settings(
        spec=spec_path,
        default_tenant="t1",
        redis_url=redis_url.url,
        redis_prefix=prefix,
    )
    client = keyed_client(create_app(settings), "t1")
    history = client.get("/v1/alerts/history", params={"start": "0", "end": str(10**13)})
    assert history.status_code == 200, history.text
    rows = history.json()["transitions"]
    assert len(rows) == len({t.transition_id for t in got})
    firing = next(r for r in rows if r["rule"] == "views_high" and r["to_state"] == "firing")
    assert firing["labels"]["team"] == "web" and firing["annotations"]["summary"] == (
        "de: 500.0 views"
    )

    active = client.get("/v1/alerts").json()["alerts"]
    # At the end: fr is absent (firing); de and the total are back to normal.
    assert [(a["rule"], a["labels"]["country"], a["to_state"]) for a in active] == [
        ("views_gone", "fr", "firing")
    ]
    assert client.get("/v1/alerts", params={"severity": "critical"}).json()["count"] == 0
    everything = client.get("/v1/alerts", params=[("state", s) for s in ("normal", "firing")])
    # Instances that never left Normal have no transition: views_high de, total, fr gone.
    assert everything.json()["count"] == 3
    assert client.get("/v1/alerts", params={"label": "country=de"}).json()["count"] == 0
    assert client.get("/v1/alerts", params={"state": "bogus"}).status_code == 400

    rules = client.get("/v1/alerts/rules").json()["rules"]
    assert [r["name"] for r in rules] == ["views_high", "views_total_high", "views_gone"]
    assert rules[0]["for"] == "2m"


def test_simulate_runs_a_rule_over_stored_windows(
    tmp_path: Path, redis_url: RedisTarget, warehouse_target: WarehouseTarget
) -> None:
    warehouse = warehouse_target.open()
    warehouse.init()
    warehouse.upsert_windows([w for w in _windows()])
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC)
    settings = warehouse_target.settings(
        spec=spec_path,
        default_tenant="t1",
        redis_url=redis_url.url,
        redis_prefix=f"{redis_url.prefix}-sim",
    )
    client = keyed_client(create_app(settings), "t1")
    rule = {"name": "try", "kind": "threshold", "metric": "views", "value": 100, "for": "3m"}
    reply = client.post(
        "/v1/alerts/rules/simulate", json={"rule": rule, "start": "0", "end": str(10**13)}
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["fired"] == 1 and body["windows"] == 40
    assert [
        (t["labels"]["country"], t["at"] // MIN, t["to_state"]) for t in body["transitions"]
    ] == [
        ("de", 6, "pending"),
        ("de", 9, "firing"),
        ("de", 11, "normal"),
    ]
    bad = client.post(
        "/v1/alerts/rules/simulate",
        json={"rule": {**rule, "metric": "nope", "op": "over"}},
    )
    assert bad.status_code == 422 and "op" in bad.text
    bad = client.post("/v1/alerts/rules/simulate", json={"rule": {**rule, "metric": "nope"}})
    assert bad.status_code == 422 and "unknown metric 'nope'" in bad.text
