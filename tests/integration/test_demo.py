"""The demo producer against a real broker: what lands on the topic, and how fast."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from riffle.operators.envelope import EnvelopeError, check, decode
from riffle.sources.demo import DemoGenerator, produce
from tests.integration.kafka_support import read_topic

pytestmark = pytest.mark.integration

N = 2000


def _produce_and_read(
    servers: str, topic: str, seed: int
) -> tuple[dict[int, list[tuple[bytes, bytes]]], int, int]:
    started = time.time_ns() // 1_000_000
    summary = produce(servers, topic, rate=20_000, count=N, seed=seed)
    finished = time.time_ns() // 1_000_000
    assert (summary.sent, summary.failed) == (N, 0)
    return read_topic(servers, topic), started, finished


@pytest.fixture(scope="module")
def produced(
    kafka_broker: str, topic_factory: Callable[..., str]
) -> tuple[dict[int, list[tuple[bytes, bytes]]], int, int]:
    return _produce_and_read(kafka_broker, topic_factory(partitions=4, prefix="demo"), seed=11)


def _events(
    partitions: dict[int, list[tuple[bytes, bytes]]],
) -> tuple[list[tuple[bytes, dict[str, Any], int]], int]:
    good, bad = [], 0
    for messages in partitions.values():
        for key, value in messages:
            try:
                event = decode(value)
                good.append((key, event, check(event)))
            except EnvelopeError:
                bad += 1
    return good, bad


def test_every_event_arrives_keyed_by_user(produced: Any) -> None:
    partitions, _, _ = produced
    assert sum(len(m) for m in partitions.values()) == N
    assert all(partitions.values()), "keys should spread over every partition"
    home: dict[bytes, int] = {}
    for partition, messages in partitions.items():
        for key, _ in messages:
            assert home.setdefault(key, partition) == partition
    good, _ = _events(partitions)
    for key, event, _ in good:
        assert event["context"]["user_id"].encode() == key


def test_types_in_sensible_proportions(produced: Any) -> None:
    good, _ = _events(produced[0])
    types = Counter(event["type"] for _, event, _ in good)
    assert {"page_view", "api_request", "add_to_cart"} <= set(types)
    assert 0.2 < types["page_view"] / len(good) < 0.6
    assert 0.3 < types["api_request"] / len(good) < 0.7
    assert types["add_to_cart"] > types["purchase"]


def test_malformed_and_late_shares_are_small(produced: Any) -> None:
    partitions, started, finished = produced
    good, bad = _events(partitions)
    assert bad <= 0.02 * N
    late = [ts for _, _, ts in good if ts < started - 60_000]
    on_time = [ts for _, _, ts in good if ts >= started - 60_000]
    assert len(late) <= 0.02 * N
    assert all(started - 120_000 * 6 < ts for ts in late)
    assert all(started - 1000 <= ts <= finished + 1000 for ts in on_time)


def test_purchases_carry_amount_and_currency(produced: Any) -> None:
    good, _ = _events(produced[0])
    purchases = [event for _, event, _ in good if event["type"] == "purchase"]
    for event in purchases:
        assert event["props"]["amount"] > 0
        assert event["props"]["currency"].isalpha()
        assert len(event["props"]["currency"]) == 3


def test_same_seed_same_events_per_session(
    produced: Any, kafka_broker: str, topic_factory: Callable[..., str]
) -> None:
    again, _, _ = _produce_and_read(kafka_broker, topic_factory(prefix="demo"), seed=11)
    other, _, _ = _produce_and_read(kafka_broker, topic_factory(prefix="demo"), seed=12)

    def per_session(partitions: dict[int, list[tuple[bytes, bytes]]]) -> dict[bytes, list[str]]:
        out: dict[bytes, list[str]] = {}
        for key, event, _ in _events(partitions)[0]:
            out.setdefault(key, []).append(f"{event['type']}:{event['event_id']}")
        return out

    assert per_session(again) == per_session(produced[0])
    assert per_session(other) != per_session(produced[0])


def test_paced_to_the_rate_for_the_duration(
    kafka_broker: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(prefix="demo")
    factor = DemoGenerator(3).rate_factor(time.time_ns() // 1_000_000)
    started = time.monotonic()
    summary = produce(kafka_broker, topic, rate=400, duration=1.5, seed=3)
    elapsed = time.monotonic() - started
    assert summary.failed == 0
    assert summary.sent == pytest.approx(400 * factor * 1.5, rel=0.15)
    assert 1.4 < elapsed < 4.0
    assert sum(len(m) for m in read_topic(kafka_broker, topic).values()) == summary.sent
