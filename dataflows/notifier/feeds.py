"""Where the notifier reads transitions from: the Kafka alerts topic or a Pub/Sub
subscription. Either way a transition counts as consumed only once the state it changed
is committed to Redis (see the package docstring):

* :class:`KafkaFeed` hands the offsets read to the notifier, which commits them in the
  same Redis transaction as the groups; a restart resumes from there;
* :class:`PubSubFeed` acknowledges what it handed out only when told the state is
  committed (:meth:`~TransitionFeed.committed`); what a crashed or stopped notifier
  read but did not commit is redelivered by Pub/Sub (at least once), and the
  dispatcher's ``seen`` makes a transition applied before a no-op.
"""

from __future__ import annotations

import queue
import uuid
from typing import Any, Protocol

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from riffle.sources.topics import ensure_topics

log = structlog.get_logger(__name__)


class TransitionFeed(Protocol):
    """Transitions as bytes, with the position they were read at (for the log)."""

    name: str
    """What the committed offsets are kept under in Redis."""

    def open(self, offsets: dict[int, int]) -> None:
        """Start reading (Kafka: from ``offsets``, partition → next offset)."""

    def read(self, wait_s: float) -> list[tuple[bytes, str]]:
        """What arrived, waiting at most ``wait_s`` for the first."""

    def offsets(self) -> dict[int, int]:
        """Positions to commit with the state for what :meth:`read` returned (Kafka)."""

    def committed(self) -> None:
        """Everything :meth:`read` returned is reflected in committed state."""

    def close(self) -> None:
        """Stop reading; what was read but not committed is read again by the next owner."""


class KafkaFeed:
    """The alerts topic, assigned whole (one notifier runs at a time)."""

    def __init__(self, servers: str, topic: str, partitions: int = 4) -> None:
        self.servers = servers
        self.name = topic
        self.partitions = partitions
        self._consumer: Consumer | None = None
        self._dirty: dict[int, int] = {}

    def open(self, offsets: dict[int, int]) -> None:
        ensure_topics(self.servers, [self.name], self.partitions)
        consumer = Consumer(
            {
                "bootstrap.servers": self.servers,
                "group.id": f"riffle-notifier-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        parts = consumer.list_topics(self.name, timeout=30).topics[self.name].partitions
        consumer.assign(
            [TopicPartition(self.name, p, offsets.get(p, OFFSET_BEGINNING)) for p in parts]
        )
        self._consumer = consumer

    def read(self, wait_s: float) -> list[tuple[bytes, str]]:
        assert self._consumer is not None, "open() first"
        first = self._consumer.poll(wait_s)
        messages = [] if first is None else [first, *self._consumer.consume(1000, 0)]
        out: list[tuple[bytes, str]] = []
        for m in messages:
            if m.error():
                log.warning("notifier_read_error", error=str(m.error()))
                continue
            part, offset = m.partition(), m.offset()
            if part is None or offset is None:
                continue
            self._dirty[part] = offset + 1
            out.append((m.value() or b"", f"partition {part} offset {offset}"))
        return out

    def offsets(self) -> dict[int, int]:
        return dict(self._dirty)

    def committed(self) -> None:
        self._dirty = {}

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()


class PubSubFeed:
    """A Pub/Sub subscription (streaming pull; ``PUBSUB_EMULATOR_HOST`` is honoured).

    Messages held but not yet acknowledged have their ack deadline extended by the
    client, up to ``max_messages`` at a time.
    """

    def __init__(self, project: str, subscription: str, *, max_messages: int = 1000) -> None:
        self.project = project
        self.name = subscription
        self.max_messages = max_messages
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._read: list[Any] = []
        self._client: Any = None
        self._future: Any = None

    def open(self, offsets: dict[int, int]) -> None:
        import google.cloud.pubsub_v1 as pubsub_v1

        self._client = pubsub_v1.SubscriberClient()
        self._future = self._client.subscribe(
            self._client.subscription_path(self.project, self.name),
            callback=self._inbox.put,
            flow_control=pubsub_v1.types.FlowControl(max_messages=self.max_messages),
        )

    def read(self, wait_s: float) -> list[tuple[bytes, str]]:
        try:
            got = [self._inbox.get(timeout=wait_s) if wait_s > 0 else self._inbox.get_nowait()]
        except queue.Empty:
            return []
        while True:
            try:
                got.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        self._read += got
        return [(bytes(m.data), f"message {m.message_id}") for m in got]

    def offsets(self) -> dict[int, int]:
        return {}

    def committed(self) -> None:
        for message in self._read:
            message.ack()
        self._read = []

    def close(self) -> None:
        for message in self._read:
            message.nack()
        self._read = []
        if self._future is not None:
            self._future.cancel()
            try:
                self._future.result(timeout=5)
            except Exception as exc:  # noqa: BLE001 - cancellation surfaces as an error
                log.debug("notifier_pubsub_closed", error=repr(exc))
            self._client.close()
