"""Creating the topics Riffle reads and writes, for local stacks, demos and tests.

Production clusters usually have their topics made by whoever runs them;
:func:`ensure_topics` is for the places where Riffle owns the broker (``riffle
up``, ``riffle topics create``, the test suite). It is idempotent: topics that
exist are left as they are, whatever their partition count.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from riffle.config.errors import RiffleError

log = structlog.get_logger(__name__)


class BrokerUnavailableError(RiffleError):
    """No Kafka broker answered at the bootstrap address in time."""


_TRANSIENT = frozenset({KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN})
"""Errors of a create request that a broker coming back would answer differently."""


class TopicError(RiffleError):
    """The broker answered but refused to create a topic or never showed it."""


def ensure_topics(
    servers: str, topics: Sequence[str], partitions: int, *, timeout: float = 15.0
) -> None:
    """Make sure every topic in ``topics`` exists; return once metadata lists them all.

    Missing topics are created with ``partitions`` partitions and replication
    factor 1; existing ones are not touched (a differing partition count is
    logged, not changed). Raises :class:`BrokerUnavailableError` when the
    broker at ``servers`` does not answer within ``timeout`` seconds and
    :class:`TopicError` when creation fails or the topics do not appear in
    the metadata before ``timeout``.
    """
    if partitions < 1:
        raise ValueError("a topic needs at least one partition")
    wanted = list(dict.fromkeys(topics))
    # librdkafka's own connection logs would repeat what the exception says.
    admin = AdminClient({"bootstrap.servers": servers, "log_level": 0})
    deadline = time.monotonic() + timeout
    existing = _partition_counts(admin, servers, timeout)
    missing = [t for t in wanted if t not in existing]
    for topic in wanted:
        count = existing.get(topic)
        if count is not None and count != partitions:
            log.warning("topic_partitions_differ", topic=topic, has=count, wanted=partitions)
    while missing:  # a broker restarting mid-request is asked again until the deadline
        futures = admin.create_topics(
            [NewTopic(t, partitions, replication_factor=1) for t in missing],
            request_timeout=max(0.5, deadline - time.monotonic()),
        )
        missing = []
        for topic, future in futures.items():
            try:
                future.result(timeout=max(0.1, deadline - time.monotonic()))
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                if error.code() in _TRANSIENT and time.monotonic() < deadline:
                    missing.append(topic)
                    continue
                raise TopicError(f"cannot create topic {topic!r}: {error.str()}") from exc
            else:
                log.info("topic_created", topic=topic, partitions=partitions)
        if missing:
            time.sleep(0.5)
    while True:
        remaining = deadline - time.monotonic()
        shown = _partition_counts(admin, servers, max(remaining, 0.5))
        absent = [t for t in wanted if not shown.get(t)]
        if not absent:
            return
        if remaining <= 0:
            raise TopicError(f"topics {absent} did not appear in the metadata of {servers}")
        time.sleep(0.05)


def _partition_counts(admin: AdminClient, servers: str, timeout: float) -> dict[str, int]:
    """Partition count of every topic the broker lists (topics in error count as 0)."""
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnavailableError(
            f"no Kafka broker answered at {servers} within {timeout:.0f}s "
            "(is it running? set RIFFLE_KAFKA_BOOTSTRAP to its host:port)"
        ) from exc
    return {
        name: 0 if info.error is not None else len(info.partitions)
        for name, info in metadata.topics.items()
    }
