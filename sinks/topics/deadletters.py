"""The dead-letter topic: its message layout, the producers that write it, and a reader.

Layout: value is :meth:`DeadLetter.to_json` (original bytes base64 in ``raw``),
key is the tenant, headers ``riffle-failure-type`` and ``riffle-tenant``. On Pub/Sub
the value is the message data and the headers are attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)

from riffle.config.errors import RiffleError
from riffle.operators.records import DeadLetter
from riffle.sinks.topics.pubsub import PubSubTopic
from riffle.sinks.topics.target import TopicTarget

FAILURE_HEADER = "riffle-failure-type"
TENANT_HEADER = "riffle-tenant"


class DeadLetterError(RiffleError):
    """Dead letters could not be handed to the broker."""


class DeadLetterProducer:
    """Writes dead letters; :meth:`send` returns only once the broker has all of them."""

    def __init__(self, servers: str, topic: str, *, timeout_s: float = 30.0) -> None:
        self.topic = topic
        self.timeout_s = timeout_s
        self._producer = Producer(
            {
                "bootstrap.servers": servers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "compression.type": "lz4",
            }
        )

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Produce and wait for delivery; :class:`DeadLetterError` names the first failure."""
        failures: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err.str())

        for letter in letters:
            while True:
                try:
                    self._producer.produce(
                        self.topic,
                        value=letter.to_json(),
                        key=letter.tenant.encode(),
                        headers=[(k, v.encode()) for k, v in _headers(letter).items()],
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:  # local queue full: let deliveries drain
                    self._producer.poll(0.1)
            self._producer.poll(0)
        remaining = self._producer.flush(self.timeout_s)
        if failures or remaining:
            detail = failures[0] if failures else f"{remaining} not confirmed in {self.timeout_s}s"
            raise DeadLetterError(f"dead letters to {self.topic!r} failed: {detail}")


class PubSubDeadLetterProducer:
    """Writes dead letters to a Pub/Sub topic; :meth:`send` returns once Pub/Sub has all."""

    def __init__(self, project: str, topic: str, *, timeout_s: float = 30.0) -> None:
        self._topic = PubSubTopic(project, topic, timeout_s=timeout_s)

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Publish and wait; :class:`DeadLetterError` names the first failure."""
        error = self._topic.publish([(x.to_json(), _headers(x)) for x in letters])
        if error is not None:
            raise DeadLetterError(f"dead letters to {self._topic.path!r} failed: {error}")


def dead_letter_sender(target: TopicTarget) -> Callable[[Sequence[DeadLetter]], None]:
    """The ``send`` of a producer for ``target`` (Kafka or Pub/Sub)."""
    if target.broker == "pubsub":
        return PubSubDeadLetterProducer(target.address, target.topic).send
    return DeadLetterProducer(target.address, target.topic).send


def _headers(letter: DeadLetter) -> dict[str, str]:
    return {FAILURE_HEADER: letter.failure_type, TENANT_HEADER: letter.tenant}


def read_dead_letters(
    servers: str, topic: str, partitions: Sequence[int], timeout_s: float = 10.0
) -> list[DeadLetter]:
    """Every dead letter in ``topic`` from the beginning up to the current end."""
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": "riffle-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    letters: list[DeadLetter] = []
    pending = set(partitions)
    try:
        while pending:
            msg = consumer.poll(timeout_s)
            if msg is None:
                raise DeadLetterError(f"no end of {topic!r} seen within {timeout_s}s")
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition() or 0)
                    continue
                raise DeadLetterError(f"reading {topic!r}: {error.str()}")
            value = msg.value()
            if isinstance(value, bytes):
                letters.append(DeadLetter.from_json(value))
    finally:
        consumer.close()
    return letters
