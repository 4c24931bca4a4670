"""The broker restarts mid-stream (SIGKILL): the dataflow loses and double-counts nothing.

Tansu keeps its log in a local S3 server (``moto_server``), so a restarted
broker on the same port serves every message acknowledged before the kill.
Events stream in while `riffle run --recovery-dir` runs; the broker is killed
while a batch is being written and restarted; the producer retries through
the outage and the dataflow's source reconnects by itself. Every acknowledged
message must be in the restarted broker's log, and the final windows in Redis
and in the warehouse must equal a recomputation by SQL from that log.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from riffle.config.settings import Settings
from riffle.dataflows.recovery import init_recovery
from riffle.operators.records import WindowResult
from riffle.sources.topics import ensure_topics
from riffle.stack import free_port
from tests.durable_broker import DurableBroker, durable_broker
from tests.integration.flow_support import (
    Expected,
    WindowKey,
    assert_matches,
    assert_sketches_match,
    closed_expectation,
    closed_sketches,
    enqueue,
    kill,
    produce,
    redis_finals,
    scrape,
    start_flow,
    wait_for,
    warehouse_rows,
)
from tests.integration.kafka_support import read_topic
from tests.scenario import Sent, closers, scenario

pytestmark = pytest.mark.integration

PARTITIONS = 4
EVENTS = 20_000
CHUNK = 1000
IN_FLIGHT_S = 0.08
"""How long after the sixth chunk is queued the broker dies: its batches are then being written."""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[DurableBroker]:
    directory = tmp_path / "broker"
    directory.mkdir()
    with durable_broker(directory) as running:
        yield running


@pytest.fixture
def durable(
    broker: DurableBroker, settings_factory: Callable[..., Settings], tmp_path: Path
) -> Settings:
    events, dead = "events-durable", "dead-durable"
    ensure_topics(broker.servers, [events, dead], PARTITIONS)
    settings = settings_factory(
        kafka_bootstrap=broker.servers,
        events_topic=events,
        deadletter_topic=dead,
        lateness_seconds=10,
        idle_seconds=120,  # no wall-clock closing: the event times decide everything
        partial_interval_seconds=0.2,
        snapshot_seconds=0.5,
        recovery_dir=tmp_path / "recovery",
        metrics_port=free_port(),
    )
    assert settings.recovery_dir is not None
    init_recovery(settings.recovery_dir, 1)
    return settings


def test_broker_restart_mid_stream_loses_and_double_counts_nothing(
    broker: DurableBroker, durable: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "flow.log"
    now = int(time.time() * 1000)
    span = EVENTS * 100  # the scenario's events are ~100 ms of event time apart
    base = now - now % 60_000 - span
    sent = scenario(seed=11, n=EVENTS, partitions=PARTITIONS, base=base, users=True)
    produced: list[int] = []
    in_flight = threading.Event()

    def stream() -> None:  # at least once: Tansu's idempotent produce can lose a batch
        _stream(durable.kafka_servers, durable.events_topic, sent, False, in_flight, produced)

    flow = start_flow(durable, log)
    producer = threading.Thread(target=stream)
    try:
        wait_for(lambda: _events_in(durable) >= 0, 30, "the flow to serve metrics", log)
        producer.start()
        _kill_mid_write(broker, in_flight)
        down_at = len(produced)
        producer.join(90)
        assert not producer.is_alive(), "the producer did not finish after the restart"
        assert down_at < len(sent) // CHUNK, "the broker should die mid-stream"
        tail = closers(base + span + 3_600_000, PARTITIONS)
        produce(durable, tail)
        stored = _log_after_restart(durable.kafka_servers, durable.events_topic, sent + tail)
        # A batch stored twice is one set of events: the flow drops the copies (dedup).
        events = _first_copies(stored)
        expected = closed_expectation(events, lateness_ms=10_000)
        sketched = closed_sketches(events, lateness_ms=10_000)
        wait_for(
            lambda: (expected.keys() | sketched.keys()) <= redis_finals(durable).keys(),
            180,
            "finals",
            log,
            lambda: _missing(expected, redis_finals(durable), durable, base),
        )
        assert_matches(redis_finals(durable), expected)
        assert_sketches_match(redis_finals(durable), sketched)
        wait_for(lambda: expected.keys() <= warehouse_rows(durable).keys(), 60, "warehouse", log)
        assert_matches(warehouse_rows(durable), expected)
        # Every message of the log read exactly once: the restart re-delivered nothing.
        assert _events_in(durable) == len(stored)
        assert flow.poll() is None, "the dataflow should survive the broker restart"
        # Snapshots kept coming (every 0.5 s) and the state gauges are served.
        for stage in ("ingest", "windows"):
            age = scrape(durable, f'riffle_dataflow_snapshot_age_seconds{{stage="{stage}"}}')
            assert 0 <= age < 5, stage
            assert scrape(durable, f'riffle_dataflow_state_bytes{{stage="{stage}"}}') > 0
    finally:
        kill(flow)
        if producer.is_alive():
            producer.join(10)
    assert broker.starts == 2


def _stream(
    servers: str,
    topic: str,
    sent: list[Sent],
    idempotent: bool,
    in_flight: threading.Event,
    produced: list[int],
) -> None:
    """Produce ``sent`` in chunks, each to its partition, as one long-lived client would.

    Each chunk is flushed (every message acknowledged, retrying through an
    outage) and followed by a pause, so events keep arriving for seconds.
    ``in_flight`` is set once the sixth chunk is queued: its batches are then
    on their way to the broker. ``produced`` gets the running count of
    acknowledged messages after each chunk.
    """
    producer = Producer(
        {
            "bootstrap.servers": servers,
            "acks": "all",
            "enable.idempotence": idempotent,
            "linger.ms": 5,
        }
    )
    for start in range(0, len(sent), CHUNK):
        enqueue(producer, topic, sent[start : start + CHUNK])
        if start == 5 * CHUNK:
            in_flight.set()
        assert producer.flush(60) == 0
        produced.append(start + CHUNK)
        time.sleep(0.2)


def _kill_mid_write(broker: DurableBroker, in_flight: threading.Event) -> None:
    """SIGKILL the broker while the sixth chunk is being written; restart it 2 s later."""
    assert in_flight.wait(30), "the producer is stuck before the sixth chunk"
    time.sleep(IN_FLIGHT_S)
    broker.kill()
    time.sleep(2.0)  # the flow and the producer keep polling a dead broker
    broker.start()


def _first_copies(log: list[Sent]) -> list[Sent]:
    """``log`` without the later copies of a message (a batch the producer sent twice)."""
    seen: set[bytes] = set()
    out = []
    for item in log:
        if item.raw not in seen:
            seen.add(item.raw)
            out.append(item)
    return out


def _log_after_restart(servers: str, topic: str, sent: list[Sent]) -> list[Sent]:
    """The events topic as the restarted broker serves it, each partition in offset order.

    Fails if an acknowledged message is missing. A batch the producer sent
    again after the kill may be there twice (at-least-once delivery); the
    flow must read each message of the log once and count each event once
    (its de-duplication drops the second copy), so the expectation is
    computed from the log itself, copies removed.
    """
    valid = {item.raw: item.valid for item in sent}
    stored = read_topic(servers, topic, timeout=180)  # S3-backed Tansu is slow under load
    log = [
        Sent(part, value, valid[value])
        for part, messages in stored.items()
        for _, value in messages
    ]
    lost = Counter((s.partition, s.raw) for s in sent) - Counter((s.partition, s.raw) for s in log)
    assert not lost, f"the restarted broker lost {sum(lost.values())} acknowledged messages"
    return log


@pytest.mark.soak
@pytest.mark.xfail(
    reason="Tansu 0.6.0 (S3 storage) acknowledges an idempotent batch in flight at a SIGKILL "
    "and then serves the log without it",
    strict=False,
)
def test_idempotent_batch_in_flight_at_sigkill_is_kept(broker: DurableBroker) -> None:
    """A canary for the broker, not for Riffle: the reason the test above produces at least once.

    Killed while an idempotent producer's batch is in flight, the restarted
    Tansu answers the retried batch as a duplicate (the producer counts it
    delivered) but its messages are not in the log (numbers in
    docs/operations.md). It passes (XPASS) once a Tansu release keeps them.
    """
    topic = "canary"
    ensure_topics(broker.servers, [topic], PARTITIONS)
    sent = [Sent(i % PARTITIONS, b"m%d" % i, True) for i in range(EVENTS)]
    in_flight = threading.Event()

    def stream() -> None:
        _stream(broker.servers, topic, sent, True, in_flight, [])

    producer = threading.Thread(target=stream)
    producer.start()
    _kill_mid_write(broker, in_flight)
    producer.join(90)
    _log_after_restart(broker.servers, topic, sent)


def _missing(
    expected: Expected, got: dict[WindowKey, WindowResult], settings: Settings, base: int
) -> str:
    """Which expected finals are not in ``got``: per metric, how many and when."""
    missing = sorted(expected.keys() - got.keys())
    by_metric: dict[str, list[int]] = {}
    for metric, _dims, start in missing:
        by_metric.setdefault(metric, []).append((start - base) // 1000)
    summary = {m: (len(s), min(s), max(s)) for m, s in by_metric.items()}
    return (
        f"{len(missing)} missing (metric: count, first s, last s after base) {summary}; "
        f"e.g. {missing[:4]}; events in {_events_in(settings)}"
    )


def _events_in(settings: Settings) -> float:
    try:
        return scrape(settings, "riffle_dataflow_events_in_total")
    except OSError:  # not serving yet
        return -1.0
