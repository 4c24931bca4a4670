"""ensure_topics against the real broker, and without one."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient

from riffle.sources.topics import BrokerUnavailableError, ensure_topics
from riffle.stack import free_port

pytestmark = pytest.mark.integration


def test_creates_missing_topics_and_leaves_existing_ones(kafka_broker: str) -> None:
    names = [f"ensure-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    ensure_topics(kafka_broker, names[:1], 2)
    ensure_topics(kafka_broker, names, 3)
    metadata = AdminClient({"bootstrap.servers": kafka_broker}).list_topics(timeout=10)
    assert len(metadata.topics[names[0]].partitions) == 2  # not changed
    assert len(metadata.topics[names[1]].partitions) == 3


def test_unreachable_broker_is_a_clear_error() -> None:
    servers = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match=f"no Kafka broker answered at {servers}"):
        ensure_topics(servers, ["x"], 1, timeout=1.0)
    assert time.monotonic() - started < 5


def test_rejects_zero_partitions(kafka_broker: str) -> None:
    with pytest.raises(ValueError, match="partition"):
        ensure_topics(kafka_broker, ["x"], 0)
