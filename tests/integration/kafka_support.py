"""Reading a topic back in tests: assign every partition, stop at partition EOF."""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from riffle.sources.kafka import list_partitions


def read_topic(
    servers: str, topic: str, timeout: float = 20.0
) -> dict[int, list[tuple[bytes, bytes]]]:
    """Every message of ``topic`` as ``{partition: [(key, value), ...]}`` in offset order.

    No consumer group (joins take ~20 s on Tansu): partitions are assigned,
    and each is done when the consumer reports its end (``enable.partition.eof``).
    """
    partitions = list_partitions(servers, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": "riffle-tests-assign-only",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 20,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in partitions}
    done: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(done) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: no EOF from partitions {set(partitions) - done}")
            for msg in consumer.consume(1000, 0.5):
                error, partition = msg.error(), msg.partition()
                assert partition is not None
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(error.str())
                    done.add(partition)
                    continue
                out[partition].append((msg.key() or b"", msg.value() or b""))
    finally:
        consumer.close()
    return out
