"""Kafka input that hands the flow whole polls, one item per partition and poll.

Bytewax's own ``KafkaSource`` emits one Python object per message; this
source emits ``(partition_key, PartitionPoll)`` so the ingest stage handles a
poll in one call. Partitions are assigned (no consumer group), the resume
state is the next offset, and a partition at the end of its log with nothing
new emits an empty poll every ``heartbeat_ms`` so downstream watermarks can
advance while it is idle.

A poll that fills a batch is followed by the next at once (a backlog is
read as fast as the flow goes); after a short one the partition waits
``poll_ms`` before it polls again, so live traffic arrives in batches of
``poll_ms`` rather than message by message — every batch costs the flow work
per shard, and a busy loop of empty polls costs a core. The consumers ask
the broker to hold an empty fetch for up to ``fetch.wait.max.ms`` (500 ms)
instead of answering at once and being asked again.

With ``tail=False`` a partition stops at the end of its log (bounded reads:
backfills, benchmarks), which ends the flow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from riffle.config.errors import RiffleError

TENANT_HEADER = "riffle-tenant"
"""Message header naming the tenant; set by the ingest API from the API key."""

log = structlog.get_logger(__name__)


class SourceError(RiffleError):
    """The Kafka source cannot read its topic."""


@dataclass(frozen=True, slots=True)
class PartitionPoll:
    """Messages of one poll as ``(value, tenant, offset)``.

    ``at_end`` says the reader was at the end of the partition's log after
    this poll (caught up); it turns false again as soon as new messages come.
    ``origin`` names where the messages come from when that is not the
    partition itself (an import's file, the source an archived event was read
    from); offsets are then positions in the origin.
    """

    partition: str
    messages: list[tuple[bytes | None, str | None, int]]
    at_end: bool
    origin: str | None = None
    lag: int = 0
    """Messages of the partition's log not read yet: the broker's high watermark at the
    last fetch minus the next offset (0 when unknown)."""


def partition_key(topic: str, partition: int) -> str:
    """The key that names one topic partition throughout the flow."""
    return f"{topic}/{partition}"


def list_partitions(servers: str, topic: str, timeout: float = 10.0) -> list[int]:
    """Partition numbers of ``topic``; :class:`SourceError` if it does not exist."""
    admin = AdminClient({"bootstrap.servers": servers})
    metadata = admin.list_topics(topic, timeout=timeout)
    info = metadata.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        reason = info.error.str() if info is not None and info.error else "no partitions"
        raise SourceError(f"cannot read Kafka topic {topic!r} at {servers}: {reason}")
    return sorted(info.partitions)


def _tenant_of(headers: object) -> str | None:
    if isinstance(headers, list):
        for name, value in headers:
            if name == TENANT_HEADER and isinstance(value, bytes) and value:
                return value.decode("utf-8", "replace")
    return None


class _PartitionReader(StatefulSourcePartition[tuple[str, PartitionPoll], int]):
    def __init__(
        self,
        config: dict[str, object],
        topic: str,
        partition: int,
        offset: int,
        batch_size: int,
        heartbeat_ms: int,
        tail: bool,
        poll_ms: int = 250,
    ) -> None:
        self._consumer = Consumer(config)
        self._partition = TopicPartition(topic, partition)
        self._consumer.assign([TopicPartition(topic, partition, offset)])
        self._key = partition_key(topic, partition)
        self._offset = offset
        self._batch_size = batch_size
        self._heartbeat_s = heartbeat_ms / 1000
        self._at_end = False
        self._last_emit = 0.0
        self._full = False
        self._tail = tail
        self._poll = timedelta(milliseconds=poll_ms)

    def next_batch(self) -> list[tuple[str, PartitionPoll]]:
        if self._at_end and not self._tail:
            raise StopIteration
        messages: list[tuple[bytes | None, str | None, int]] = []
        for msg in self._consumer.consume(self._batch_size, 0):
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._at_end = True
                    continue
                if error.fatal():
                    raise SourceError(f"Kafka source {self._key}: {error.str()}")
                log.warning("kafka_source_error", partition=self._key, error=error.str())
                continue
            self._at_end = False
            headers = msg.headers()
            tenant = _tenant_of(headers) if headers else None
            offset = msg.offset() or 0
            value = msg.value()
            messages.append((value if isinstance(value, bytes) else None, tenant, offset))
            self._offset = offset + 1
        now = time.monotonic()
        self._full = len(messages) >= self._batch_size
        if (
            messages
            or (self._at_end and not self._tail)
            or now - self._last_emit >= self._heartbeat_s
        ):
            self._last_emit = now
            return [(self._key, PartitionPoll(self._key, messages, self._at_end, lag=self._lag()))]
        return []

    def _lag(self) -> int:
        # The high watermark of the last fetch response: no request to the broker.
        _low, high = self._consumer.get_watermark_offsets(self._partition, cached=True)
        return max(0, high - self._offset) if high >= 0 else 0

    def next_awake(self) -> datetime | None:
        # At once after a full batch (a backlog); after a short one, in poll_ms.
        return None if self._full else datetime.now(UTC) + self._poll

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._consumer.close()


class KafkaPollSource(FixedPartitionedSource[tuple[str, PartitionPoll], int]):
    """Every partition of one topic; see the module docstring."""

    def __init__(
        self,
        servers: str,
        topic: str,
        *,
        batch_size: int = 5000,
        start_from: str = "beginning",
        heartbeat_ms: int = 1000,
        tail: bool = True,
        extra_config: dict[str, object] | None = None,
    ) -> None:
        self.servers = servers
        self.topic = topic
        self.batch_size = batch_size
        self.start_offset = OFFSET_BEGINNING if start_from == "beginning" else OFFSET_END
        self.heartbeat_ms = heartbeat_ms
        self.tail = tail
        self.extra_config = extra_config or {}

    def list_parts(self) -> list[str]:
        return [partition_key(self.topic, p) for p in list_partitions(self.servers, self.topic)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PartitionReader:
        config: dict[str, object] = {
            "bootstrap.servers": self.servers,
            "group.id": "riffle-assign-only",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 500,
            "queued.min.messages": max(10_000, self.batch_size * 4),
            **self.extra_config,
        }
        partition = int(for_part.rsplit("/", 1)[1])
        offset = self.start_offset if resume_state is None else resume_state
        return _PartitionReader(
            config, self.topic, partition, offset, self.batch_size, self.heartbeat_ms, self.tail
        )
