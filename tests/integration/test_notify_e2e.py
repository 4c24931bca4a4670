"""End to end, every part real: events produced to Tansu, `riffle run` evaluating the rule,
transitions on ``riffle.alerts``, `riffle notify` routing them through the spec's receivers
to an HTTP receiver (signed) and an SMTP server (aiosmtpd).

`kill -9` of the dataflow and of the notifier mid-incident must neither duplicate nor drop
a notification: deliveries are counted at the receivers by dedup key."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from riffle.config.settings import Settings
from riffle.dataflows.recovery import init_recovery
from riffle.operators.alerts.transitions import AlertTransition
from riffle.sinks.channels.webhook import verify
from riffle.sinks.redis.notify_state import NotifyState
from riffle.sinks.topics.alerts import AlertProducer
from riffle.stack import free_port
from tests.integration.flow_support import kill, settings_env, start_flow
from tests.integration.notify_support import (
    SECRET,
    Inbox,
    Receiver,
    smtp_server,
    transition,
    wait_until,
)

pytestmark = pytest.mark.integration

SPEC = """
version: 1
event_types: {req: {}}
dimensions: {endpoint: {path: props.endpoint}}
metrics:
  - {name: requests, events: [req], aggregation: count, dimensions: [endpoint], window: 1s}
alerts:
  - name: requests_high
    kind: threshold
    metric: requests
    value: 25
    severity: critical
    annotations: {summary: "{{ labels.endpoint }}: {{ value }} requests in a second"}
notifications:
  receivers:
    - name: ops
      webhook: {url: "HOOK_URL", secret_env: HOOK_SECRET, backoff: 50ms}
      email: {host: 127.0.0.1, port: SMTP_PORT, from: riffle@example.test, to: [ops@example.test]}
  route:
    receiver: ops
    group_by: [alertname, endpoint]
    group_wait: 0s
    group_interval: 1s
    repeat_interval: 1h
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.close()


def start_notifier(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """`riffle notify` as a child process with the webhook's secret in its environment."""
    riffle = Path(sys.executable).with_name("riffle")
    env = settings_env(settings) | {"HOOK_SECRET": SECRET.decode()}
    return subprocess.Popen(
        [str(riffle), "notify"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


class Traffic:
    """Events of endpoint /cart at ``rate`` per second, event time = now, in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.producer = Producer({"bootstrap.servers": settings.kafka_servers, "linger.ms": 5})
        self.topic = settings.events_topic
        self.rate = 8.0
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # Bursts every 0.1 s, so a loaded machine slows the loop, not the rate.
        owed = 0.0
        while not self.stop.is_set():
            owed += self.rate / 10
            now = int(time.time() * 1000)
            for _ in range(int(owed)):
                event = {"event_id": f"e{self.sent}", "type": "req", "ts": now}
                event["props"] = {"endpoint": "/cart"}
                self.producer.produce(self.topic, orjson.dumps(event))
                self.sent += 1
            owed -= int(owed)
            self.producer.poll(0)
            time.sleep(0.1)
        self.producer.flush(10)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_spike_to_signed_webhook_and_email_across_kill_9(
    settings_factory: Callable[..., Settings],
    topic_factory: Callable[..., str],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    inbox = Inbox()
    with smtp_server(inbox) as smtp_port:
        spec = tmp_path / "spec.yaml"
        spec.write_text(
            SPEC.replace("HOOK_URL", receiver.url()).replace("SMTP_PORT", str(smtp_port))
        )
        settings = settings_factory(
            spec=spec,
            alerts_topic=topic_factory(prefix="alerts"),
            lateness_seconds=0,
            idle_seconds=1,
            partial_interval_seconds=0.2,
            # No snapshot between the firing transition and the kill: the restarted flow
            # replays and re-produces it, which the notifier must recognise.
            snapshot_seconds=60,
            recovery_dir=tmp_path / "recovery",
            metrics_port=free_port(),
            notify_metrics_port=0,
            notify_lease_seconds=2,
        )
        assert settings.recovery_dir is not None
        init_recovery(settings.recovery_dir, 1)
        flow_log, notify_log = tmp_path / "flow.log", tmp_path / "notify.log"
        state = NotifyState(
            redis.Redis.from_url(settings.redis_url), settings.redis_prefix, settings.alerts_topic
        )
        flow = start_flow(settings, flow_log)
        notifier = start_notifier(settings, notify_log)
        try:
            with Traffic(settings) as traffic:
                time.sleep(3)
                traffic.rate = 60.0  # the spike: 60 requests a second > 25
                wait_until(lambda: len(receiver.received) >= 1, 90, "the firing webhook")
                wait_until(lambda: len(inbox.messages) >= 1, 30, "the firing email")
                # Both deliveries recorded (a kill between a receiver's answer and that record
                # re-sends, which the next test bounds); the alert is still firing.
                wait_until(lambda: state.outbox() == {}, 30, "the outbox to empty")
                # Mid-incident: kill both, restart both; the spike goes on meanwhile.
                kill(flow)
                kill(notifier)
                time.sleep(1.5)
                flow = start_flow(settings, flow_log)
                notifier = start_notifier(settings, notify_log)
                time.sleep(4)
                traffic.rate = 8.0
                wait_until(lambda: len(receiver.received) >= 2, 90, "the resolved webhook")
                wait_until(lambda: len(inbox.messages) >= 2, 30, "the resolved email")
                time.sleep(3)  # time for a duplicate to show up, if there were one
        finally:
            kill(flow)
            kill(notifier)
    hooks = [h.json for h in receiver.received]
    for hit in receiver.received:
        assert verify(SECRET, hit.timestamp, hit.body, hit.signature)
    assert [(h["status"], [a["status"] for a in h["alerts"]]) for h in hooks] == [
        ("firing", ["firing"]),
        ("resolved", ["resolved"]),
    ], notify_log.read_text()[-3000:]
    assert hooks[0]["alerts"][0]["labels"]["endpoint"] == "/cart"
    assert "requests in a second" in hooks[0]["alerts"][0]["annotations"]["summary"]
    keys = [h["dedup_key"] for h in hooks]
    mails = [m["X-Riffle-Dedup-Key"] for m in inbox.messages]
    assert mails == keys and len(set(keys)) == 2
    assert inbox.messages[0]["Subject"].startswith("[FIRING:1]")
    firing = hooks[0]["alerts"][0]["transition_id"]
    copies = [t for t in _transitions(settings) if t.transition_id == firing]
    assert len(copies) >= 2, "the restarted flow did not re-produce the firing transition"
    assert inbox.messages[1]["Subject"].startswith("[RESOLVED:1]")


def _transitions(settings: Settings) -> list[AlertTransition]:
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_servers, "group.id": "t", "enable.partition.eof": True}
    )
    topic = settings.alerts_topic
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    out, pending = [], set(parts)
    try:
        while pending:
            msg = consumer.poll(10)
            assert msg is not None, "the alerts topic did not answer"
            if msg.error():
                pending.discard(msg.partition())
                continue
            out.append(AlertTransition.from_json(msg.value() or b""))
    finally:
        consumer.close()
    return out


def _kill_the_notifier(
    settings_factory: Callable[..., Settings],
    topic_factory: Callable[..., str],
    receiver: Receiver,
    tmp_path: Path,
    *,
    total: int,
    kills: int,
) -> None:
    spec = tmp_path / "spec.yaml"
    text = SPEC.replace("HOOK_URL", receiver.url()).replace("SMTP_PORT", "25")
    text = "\n".join(line for line in text.splitlines() if "email:" not in line)
    text = text.replace("group_by: [alertname, endpoint]", "group_by: ['...']")
    spec.write_text(text)
    settings = settings_factory(
        spec=spec,
        alerts_topic=topic_factory(prefix="alerts"),
        notify_metrics_port=0,
        notify_lease_seconds=2,
        notify_workers=4,
    )
    producer = AlertProducer(settings.kafka_servers, settings.alerts_topic)
    log = tmp_path / "notify.log"
    step = total // (kills + 1)

    def produce() -> None:
        for i in range(total):
            producer.send([transition(f"i{i}", endpoint=f"/e{i}")])
            time.sleep(0.1)

    notifier = start_notifier(settings, log)
    feeder = threading.Thread(target=produce)
    feeder.start()
    try:
        for k in range(1, kills + 1):  # each kill while notifications are flowing
            wait_until(lambda k=k: len(receiver.received) >= step * k, 60, f"delivery {step * k}")
            kill(notifier)
            notifier = start_notifier(settings, log)
        feeder.join()
        wait_until(
            lambda: len({h.json["dedup_key"] for h in receiver.received}) >= total,
            90,
            "every notification",
        )
        time.sleep(2)
    finally:
        feeder.join()
        kill(notifier)
    hits = receiver.received
    per_instance = Counter(h.json["alerts"][0]["instance"] for h in hits)
    keys = Counter(h.json["dedup_key"] for h in hits)
    assert len(per_instance) == total and len(keys) == total  # nothing dropped, one key each
    duplicates = sum(keys.values()) - total
    # A re-send happens only if a kill lands between the receiver's 200 and the Redis write
    # that records it: at most one per delivery thread per kill.
    assert duplicates <= kills * settings.notify_workers, keys.most_common(5)
    print(f"deliveries {sum(keys.values())} for {total} notifications ({duplicates} re-sent)")


def test_kill_9_of_the_notifier_mid_delivery_neither_duplicates_nor_drops(
    settings_factory: Callable[..., Settings],
    topic_factory: Callable[..., str],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    _kill_the_notifier(settings_factory, topic_factory, receiver, tmp_path, total=60, kills=3)


@pytest.mark.soak
def test_kill_9_of_the_notifier_soak(
    settings_factory: Callable[..., Settings],
    topic_factory: Callable[..., str],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    _kill_the_notifier(settings_factory, topic_factory, receiver, tmp_path, total=600, kills=15)
