"""Google Cloud without Kafka: RIFFLE_SOURCE=pubsub, the gRPC Pub/Sub test server and no
broker process (the Kafka bootstrap address is a closed port, so any use of Kafka fails).

Events published to Pub/Sub become windows in Redis (the spine), malformed ones (from the
flow and from ingest, whose readiness checks Pub/Sub, not Kafka) dead letters on the
Pub/Sub dead-letter topic, and a spike an alert whose transitions reach
`riffle notify` through the alerts subscription and then the webhook, firing and
resolved, each once; every transition read is acknowledged once its state is committed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from google.cloud import pubsub_v1
from prometheus_client import CollectorRegistry

from riffle.config.notifications import NotificationsSpec
from riffle.config.settings import Settings
from riffle.config.spec import load_spec
from riffle.dataflows.notifier.feeds import PubSubFeed
from riffle.dataflows.notifier.run import build_channels
from riffle.dataflows.notifier.service import Notifier
from riffle.operators.records import DeadLetter
from riffle.sinks.topics.alerts import PubSubAlertProducer
from riffle.sources.pubsub_topics import ensure_pubsub, riffle_pubsub
from riffle.stack import free_port
from tests.conftest import RedisTarget
from tests.integration.flow_support import kill, redis_finals, start_flow
from tests.integration.ingest_support import serve
from tests.integration.notify_support import SECRET, Receiver, transition, wait_until
from tests.integration.pubsub_server import PubSubServer
from tests.integration.test_notify_e2e import start_notifier

pytestmark = pytest.mark.integration

PROJECT = "riffle-gcp"
TENANT = "acme"

SPEC = """
version: 1
event_types: {req: {}}
dimensions: {endpoint: {path: props.endpoint}}
metrics:
  - {name: requests, events: [req], aggregation: count, dimensions: [endpoint], window: 1s}
alerts:
  - {name: requests_high, kind: threshold, metric: requests, value: 25, severity: critical}
notifications:
  receivers:
    - name: ops
      webhook: {url: "HOOK_URL", secret_env: HOOK_SECRET, backoff: 50ms}
  route: {receiver: ops, group_by: [alertname], group_wait: 0s, group_interval: 1s}
"""


@pytest.fixture
def pubsub(monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSubServer]:
    server = PubSubServer()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", server.start())
    yield server
    server.stop()


class Traffic:
    """Events of endpoint /cart at ``rate`` per second (event time now) to Pub/Sub, in
    bursts every 0.1 s, so a loaded machine slows the loop, not the rate."""

    def __init__(self, topic: str, rate: float) -> None:
        self.publisher = pubsub_v1.PublisherClient()
        self.topic = topic
        self.rate = rate
        self.sent: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        owed = 0.0
        while not self.stop.is_set():
            owed += self.rate / 10
            now = int(time.time() * 1000)
            burst = []
            for _ in range(int(owed)):
                event = {"event_id": f"e{len(self.sent)}", "type": "req", "ts": now}
                event["props"] = {"endpoint": "/cart"}
                burst.append(self.publisher.publish(self.topic, orjson.dumps(event)))
                self.sent.append(now)
            for future in burst:
                future.result(10)
            owed -= int(owed)
            time.sleep(0.1)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_spine_dead_letters_and_alerts_on_pubsub_alone(
    pubsub: PubSubServer, redis_url: RedisTarget, tmp_path: Path
) -> None:
    receiver = Receiver().start()
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC.replace("HOOK_URL", receiver.url()))
    settings = Settings(
        spec=spec_path,
        source="pubsub",
        ingest_broker="pubsub",
        pubsub_project=PROJECT,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",  # nothing listens: Kafka must not be used
        redis_url=redis_url.url,
        redis_prefix=f"{redis_url.prefix}-gcp",
        warehouse=f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
        lateness_seconds=0,
        idle_seconds=1,
        partial_interval_seconds=0.2,
        metrics_port=free_port(),
        notify_metrics_port=0,
        notify_lease_seconds=2,
        log_format="console",
    )
    ensure_pubsub(PROJECT, *riffle_pubsub(settings))
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    events = publisher.topic_path(PROJECT, settings.pubsub_topic)
    # A consumer of the flow's dead letters, as another system would have.
    dead_topic = publisher.topic_path(PROJECT, settings.pubsub_flow_deadletter_topic)
    watch = subscriber.subscription_path(PROJECT, "dead-watch")
    subscriber.create_subscription(name=watch, topic=dead_topic)
    letters: list[Any] = []

    def on_letter(message: Any) -> None:
        letters.append(message)
        message.ack()

    watching = subscriber.subscribe(watch, callback=on_letter)
    flow_log, notify_log = tmp_path / "flow.log", tmp_path / "notify.log"
    flow = start_flow(settings, flow_log)
    notifier = start_notifier(settings, notify_log)
    try:
        publisher.publish(events, b"not json").result(10)  # the flow's dead letter
        with serve(settings) as api:
            ready = httpx.get(f"{api.url}/readyz", timeout=30)
            assert ready.status_code == 200, ready.text
            assert set(ready.json()["checks"]) == {"redis", "pubsub", "warehouse"}
            key = api.key(TENANT, ["ingest"])
            unknown = {"event_id": "u1", "type": "nope", "ts": int(time.time() * 1000), "props": {}}
            answer = httpx.post(
                f"{api.url}/v1/events", json=[unknown], headers={"X-API-Key": key}, timeout=30
            )
            assert answer.status_code == 200, answer.text  # ingest's dead letter
        with Traffic(events, rate=60.0) as traffic:  # the spike: 60 requests a second > 25
            wait_until(lambda: len(receiver.received) >= 1, 60, "the firing webhook")
            traffic.rate = 8.0
            wait_until(lambda: len(receiver.received) >= 2, 60, "the resolved webhook")
        wait_until(lambda: len(letters) >= 2, 30, "both dead letters on Pub/Sub")
        time.sleep(1)  # time for a duplicate notification to show up, if there were one
    finally:
        kill(flow)
        kill(notifier)
        watching.cancel()
        receiver.close()
    log = flow_log.read_text()[-3000:] + notify_log.read_text()[-3000:]

    hooks = [hit.json for hit in receiver.received]
    assert [h["status"] for h in hooks] == ["firing", "resolved"], log
    assert len({h["dedup_key"] for h in hooks}) == 2

    found = [DeadLetter.from_json(m.data) for m in letters]
    assert Counter(x.failure_type for x in found) == Counter({"parse": 1, "unknown_type": 1})
    assert {m.attributes.get("riffle-tenant") for m in letters} == {TENANT, settings.default_tenant}
    assert {m.attributes["riffle-failure-type"] for m in letters} == {"parse", "unknown_type"}

    # The spine: every closed one-second window counted what was sent in it.
    sent = Counter(ts - ts % 1000 for ts in traffic.sent)
    finals = {k[2]: v.value for k, v in redis_finals(settings, load_spec(spec_path)).items()}
    closed = sorted(finals)[:-1]
    assert max((finals[s] for s in closed), default=0) > 25, log  # the spike's windows
    assert {s: finals[s] for s in closed} == {s: float(sent[s]) for s in closed}

    # Every transition the notifier read was acknowledged, none is left to redeliver.
    alerts = pubsub.subs[subscriber.subscription_path(PROJECT, settings.pubsub_alerts_subscription)]
    assert alerts.attempts, "the notifier read no transition"
    assert not alerts.ready and not alerts.outstanding


def test_a_transition_is_acknowledged_only_once_its_state_is_committed(
    pubsub: PubSubServer, redis_url: RedisTarget
) -> None:
    """A notifier that stops between reading and committing leaves the transition to the
    next one (Pub/Sub redelivers it); a copy of an applied transition is a no-op."""
    settings = Settings(source="pubsub", pubsub_project=PROJECT)
    ensure_pubsub(PROJECT, *riffle_pubsub(settings))
    topic = settings.pubsub_alerts_topic
    receiver = Receiver().start()
    webhook = {"url": receiver.url(), "secret_env": "HOOK_SECRET", "backoff": "50ms"}
    spec = NotificationsSpec.model_validate(
        {
            "receivers": [{"name": "ops", "webhook": webhook}],
            "route": {"receiver": "ops", "group_wait": "0s", "group_interval": "1s"},
        }
    )
    prefix = f"{redis_url.prefix}-gcp-ack"
    registry = CollectorRegistry()

    made_before: list[Notifier] = []

    def notifier() -> Notifier:
        made = Notifier(
            spec,
            build_channels(spec, {"HOOK_SECRET": SECRET.decode()}),
            feed=PubSubFeed(PROJECT, settings.pubsub_alerts_subscription),
            redis_url=redis_url.url,
            prefix=prefix,
            lease_s=5,
            registry=registry if made_before else CollectorRegistry(),
        )
        made_before.append(made)
        made.start()
        return made

    sub = pubsub.subs[f"projects/{PROJECT}/subscriptions/{settings.pubsub_alerts_subscription}"]
    firing = transition("i1")
    alerts = PubSubAlertProducer(PROJECT, topic)
    try:
        first = notifier()
        alerts.send([firing])
        wait_until(lambda: bool(first.feed.read(0.1)), 10, "the transition read")
        first.close()  # stopped before the step committed anything
        assert pubsub.acked == [] and len(sub.ready) == 1, "read but not committed: not acked"

        second = notifier()
        alerts.send([firing])  # the flow's replay after its restart re-produces it
        try:
            wait_until(lambda: second.step(0.1) >= 0 and len(pubsub.acked) == 2, 10, "acks")
            wait_until(lambda: len(receiver.received) == 1 and second.idle(), 10, "delivery")
            time.sleep(0.3)
            second.step(0.1)
        finally:
            second.close()
    finally:
        receiver.close()
    assert [h.json["status"] for h in receiver.received] == ["firing"]
    duplicate = {"outcome": "duplicate"}
    assert registry.get_sample_value("riffle_notify_transitions_total", duplicate) == 1
    once, again = sorted(sub.attempts.values())
    assert once == 1 and again >= 2, "the first copy was delivered again after the stop"
    assert not sub.ready and not sub.outstanding
