"""Pub/Sub round trip with the official client: ingest publishes, the flow's source reads and acks.

The server is :mod:`tests.integration.pubsub_server` (official ``google.pubsub_v1``
messages over gRPC), reached through ``PUBSUB_EMULATOR_HOST``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import bytewax.operators as op
import httpx
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from google.cloud import pubsub_v1

from riffle.config.settings import Settings
from riffle.sources.kafka import PartitionPoll
from riffle.sources.pubsub import PubSubSource
from riffle.stack import free_port
from tests.integration.flow_support import (
    assert_matches,
    closed_expectation,
    kill,
    redis_finals,
    scrape,
    start_flow,
    wait_for,
)
from tests.integration.ingest_support import serve
from tests.integration.pubsub_server import PubSubServer
from tests.scenario import closers, scenario, with_copies

pytestmark = pytest.mark.integration

PROJECT = "riffle-test"


@pytest.fixture
def pubsub(monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSubServer]:
    server = PubSubServer()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", server.start())
    yield server
    server.stop()


def read(subscription: str, count: int) -> list[tuple[bytes | None, str | None, int]]:
    polls: list[tuple[str, PartitionPoll]] = []
    flow = Dataflow("pubsub_read")
    stream = op.input("in", flow, PubSubSource(PROJECT, subscription, stop_after=count))
    op.output("out", stream, TestingSink(polls))
    run_main(flow)
    return [m for _, poll in polls for m in poll.messages]


def test_ingest_to_pubsub_and_back_through_the_flow_source(
    pubsub: PubSubServer, settings_factory: Callable[..., Settings]
) -> None:
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(PROJECT, "events")
    subscription = subscriber.subscription_path(PROJECT, "flow")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)

    settings = settings_factory(
        ingest_broker="pubsub", pubsub_project=PROJECT, pubsub_topic="events"
    )
    events = [
        {
            "event_id": f"ps-{i}",
            "type": "signup",
            "ts": int(time.time() * 1000),
            "props": {"channel": "ads"},
        }
        for i in range(500)
    ]
    with serve(settings) as running:
        key = running.key("acme", ["ingest"])
        with httpx.Client(base_url=running.url, headers={"X-API-Key": key}, timeout=30) as http:
            response = http.post("/v1/events", json=[*events, {"type": "nope"}])
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 500
    assert pubsub.published == 500, "rejects are not published"

    # A direct producer too (no tenant attribute: the flow's default tenant applies).
    publisher.publish(topic, orjson.dumps({**events[0], "event_id": "direct"})).result(timeout=10)

    messages = read("flow", 501)
    ids = Counter(orjson.loads(value or b"")["event_id"] for value, _, _ in messages)
    assert ids == Counter({f"ps-{i}" for i in range(500)} | {"direct"})
    tenants = Counter(tenant for _, tenant, _ in messages)
    assert tenants == Counter({"acme": 500, None: 1})
    assert [offset for _, _, offset in messages] == list(range(501))
    assert len(pubsub.acked) == 501 and len(set(pubsub.acked)) == 501

    # Everything was acknowledged: nothing is delivered again.
    assert not any(pubsub.subs[subscription].ready)
    assert not pubsub.subs[subscription].outstanding


def test_unacknowledged_messages_are_redelivered(pubsub: PubSubServer) -> None:
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(PROJECT, "again")
    subscription = subscriber.subscription_path(PROJECT, "again-flow")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    for i in range(20):
        publisher.publish(topic, b"%d" % i).result(timeout=10)

    # A reader that stops without finishing (no clean end) acknowledges nothing.
    source = PubSubSource(PROJECT, "again-flow")
    part = source.build_part("in", source.list_parts()[0], None)
    got: list[bytes | None] = []
    deadline = time.monotonic() + 10
    while len(got) < 20 and time.monotonic() < deadline:
        for _, poll in part.next_batch():
            got += [value for value, _, _ in poll.messages]
    assert len(got) == 20
    part.close()
    assert pubsub.acked == []

    again = read("again-flow", 20)
    assert sorted(int(value or b"") for value, _, _ in again) == list(range(20))
    assert len(pubsub.acked) == 20


def test_the_dataflow_reads_pubsub_into_windows(
    pubsub: PubSubServer, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """`riffle run` with RIFFLE_SOURCE=pubsub: published events become the expected windows,
    with 10 % of them published twice (an at-least-once producer): the copies are counted
    as duplicates and the windows are the clean stream's."""
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(PROJECT, "flow-events")
    subscription = subscriber.subscription_path(PROJECT, "flow-windows")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    settings = settings_factory(
        source="pubsub",
        pubsub_project=PROJECT,
        pubsub_subscription="flow-windows",
        lateness_seconds=600,  # Pub/Sub does not keep order: nothing here may count as late
        idle_seconds=1,
        partial_interval_seconds=0.2,
        metrics_port=free_port(),
    )
    now = int(time.time() * 1000)
    base = now - now % 60_000 - 10 * 60_000
    events = scenario(seed=21, n=1500, partitions=1, base=base)
    tail = closers(base + 7_200_000, 1)
    delivered = with_copies(events, 0.1, seed=21)
    for future in [publisher.publish(topic, item.raw) for item in delivered]:
        future.result(timeout=30)
    expected = closed_expectation(events + tail, lateness_ms=600_000)
    log = tmp_path / "flow.log"
    flow = start_flow(settings, log)
    try:
        # Pub/Sub keeps no order: the closer goes out only once every event was read.
        wait_for(lambda: _read(settings) == len(delivered), 60, "every event read", log)
        publisher.publish(topic, tail[0].raw).result(timeout=30)
        wait_for(lambda: expected.keys() <= redis_finals(settings).keys(), 60, "finals", log)
        assert_matches(redis_finals(settings), expected)
        copies = scrape(settings, 'riffle_dataflow_events_total{outcome="duplicate"}')
        valid = sum(s.valid for s in delivered) - sum(s.valid for s in events)
        assert copies == valid  # a copy of a rejected event is a dead letter again
    finally:
        kill(flow)


def _read(settings: Settings) -> float:
    try:
        return scrape(settings, "riffle_dataflow_events_in_total")
    except OSError:  # not serving yet
        return -1.0
