"""``riffle topics create`` with Pub/Sub in use: its topics and the events subscription,
idempotently, on the gRPC test server (which answers ``ALREADY_EXISTS`` as the service does)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from riffle.sources.pubsub_topics import SubscriptionPlan, ensure_pubsub
from riffle.stack import free_port
from tests.integration.pubsub_server import PubSubServer

pytestmark = pytest.mark.integration

PROJECT = "riffle-test"


@pytest.fixture
def pubsub(monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSubServer]:
    server = PubSubServer()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", server.start())
    yield server
    server.stop()


def test_provisioning_is_idempotent_and_sets_the_subscription(pubsub: PubSubServer) -> None:
    plan = SubscriptionPlan("events", "events-flow", "events-dead", ack_deadline_s=90)
    created = ensure_pubsub(PROJECT, [plan])
    topic, dead = f"projects/{PROJECT}/topics/events", f"projects/{PROJECT}/topics/events-dead"
    name = f"projects/{PROJECT}/subscriptions/events-flow"
    assert created == [topic, dead, name]
    assert ensure_pubsub(PROJECT, [plan]) == [], "a second run creates nothing and does not fail"
    sub = pubsub.subs[name].spec
    assert sub.topic == topic
    assert sub.ack_deadline_seconds == 90
    assert sub.message_retention_duration.total_seconds() == 7 * 86_400
    assert sub.enable_exactly_once_delivery
    assert sub.dead_letter_policy.dead_letter_topic == dead
    assert sub.dead_letter_policy.max_delivery_attempts == 5


def test_cli_on_pubsub_alone_creates_every_topic_and_subscription(pubsub: PubSubServer) -> None:
    """RIFFLE_SOURCE=pubsub with ingest on Pub/Sub: no Kafka is contacted (the bootstrap
    address is a closed port), and the flow's and the notifier's Pub/Sub names are made."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
    env.update(
        RIFFLE_SOURCE="pubsub",
        RIFFLE_INGEST_BROKER="pubsub",
        RIFFLE_PUBSUB_PROJECT=PROJECT,
        RIFFLE_PUBSUB_TOPIC="shop",
        RIFFLE_PUBSUB_SUBSCRIPTION="shop-flow",
        RIFFLE_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
    )

    def run() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "riffle.cli", "topics", "create"]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    first = run()
    assert first.returncode == 0, first.stderr
    assert "topics ready at" not in first.stdout, "no Kafka topic is made"
    topics = {f"projects/{PROJECT}/topics/{n}" for n in ("shop", "riffle-events-dead")}
    topics |= {f"projects/{PROJECT}/topics/{n}" for n in ("riffle-deadletter", "riffle-alerts")}
    assert set(pubsub.topics) == topics
    alerts = pubsub.subs[f"projects/{PROJECT}/subscriptions/riffle-alerts-notifier"].spec
    assert alerts.topic == f"projects/{PROJECT}/topics/riffle-alerts"
    assert alerts.enable_exactly_once_delivery and alerts.ack_deadline_seconds == 60
    assert not alerts.dead_letter_policy.dead_letter_topic
    flow = pubsub.subs[f"projects/{PROJECT}/subscriptions/shop-flow"].spec
    assert (
        flow.dead_letter_policy.dead_letter_topic == f"projects/{PROJECT}/topics/riffle-events-dead"
    )
    again = run()
    assert again.returncode == 0, again.stderr
    assert "created: nothing new" in again.stdout


def test_cli_creates_kafka_topics_when_ingest_uses_kafka(
    pubsub: PubSubServer, kafka_broker: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
    env.update(
        RIFFLE_INGEST_BROKER="pubsub",
        RIFFLE_PUBSUB_PROJECT=PROJECT,
        RIFFLE_KAFKA_BOOTSTRAP=kafka_broker,
        RIFFLE_EVENTS_TOPIC=f"cli-events-{os.getpid()}",
        RIFFLE_DEADLETTER_TOPIC=f"cli-dead-{os.getpid()}",
    )
    command = [sys.executable, "-m", "riffle.cli", "topics", "create"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"cli-events-{os.getpid()}" in done.stdout, "the flow reads Kafka: its topics exist"
    assert f"projects/{PROJECT}/subscriptions/riffle-events-flow" in pubsub.subs
    assert f"projects/{PROJECT}/topics/riffle-alerts" not in pubsub.topics
