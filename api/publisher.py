"""Handing accepted events to the broker: Kafka (idempotent, ``acks=all``) or Pub/Sub.

:meth:`EventPublisher.publish` queues every message and, with ``wait``,
returns only when the broker has confirmed or refused each one: the result
is one error text (or ``None`` for delivered) per message, in order. A full
local queue raises :class:`PublishUnavailableError` before anything of the batch is
queued to the same topic twice; a delivery that is not confirmed within the
timeout is reported as failed, never as delivered.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from riffle.config.errors import RiffleError
from riffle.sources.kafka import TENANT_HEADER

log = structlog.get_logger(__name__)


class PublishUnavailableError(RiffleError):
    """The broker cannot take messages now (queue full, producer broken); retry later."""


@dataclass(frozen=True, slots=True)
class OutMessage:
    """One message to publish."""

    topic: str
    key: bytes
    value: bytes
    tenant: str
    headers: tuple[tuple[str, bytes], ...] = ()


class EventPublisher(Protocol):
    """Where ingest hands messages."""

    async def publish(self, messages: Sequence[OutMessage], *, wait: bool) -> list[str | None]:
        """Per message: ``None`` once delivered (or queued, without ``wait``), else why not."""

    def close(self) -> None:
        """Flush what is queued (briefly) and release the client."""


class KafkaPublisher:
    """A shared idempotent producer; a background thread serves its delivery callbacks."""

    def __init__(self, servers: str, *, timeout_s: float, extra: dict[str, Any] | None = None):
        self._config: dict[str, Any] = {
            "bootstrap.servers": servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "compression.type": "lz4",
            "message.timeout.ms": int(timeout_s * 1000),
            "queue.buffering.max.messages": 200_000,
            **(extra or {}),
        }
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fatal: str | None = None

    def _ensure(self) -> Producer:
        with self._lock:
            if self.fatal is not None and self._producer is not None:
                log.warning("kafka_producer_recreated", error=self.fatal)
                self._producer = None
                self.fatal = None
            if self._producer is None:
                self._producer = Producer(
                    self._config, logger=logging.getLogger("riffle.api.producer")
                )
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="riffle-producer", daemon=True
                )
                self._thread.start()
            return self._producer

    def _serve(self) -> None:
        while not self._stop.is_set():
            producer = self._producer
            if producer is None:
                self._stop.wait(0.05)
                continue
            try:
                producer.poll(0.05)
            except KafkaException as exc:  # fatal: the next publish makes a new producer
                self.fatal = exc.args[0].str()
                self._stop.wait(0.05)

    async def publish(self, messages: Sequence[OutMessage], *, wait: bool) -> list[str | None]:
        producer = self._ensure()
        batch = _Batch(asyncio.get_running_loop(), len(messages), self)
        refused: list[str | None] = [None] * len(messages)
        produce = producer.produce
        report = batch.delivered
        # tenant -> headers, shared by its messages without headers of their own
        plain: dict[str, list[tuple[str, str | bytes | None]]] = {}
        for index, message in enumerate(messages):
            headers = plain.get(message.tenant) if not message.headers else None
            if headers is None:
                headers = [(TENANT_HEADER, message.tenant.encode()), *message.headers]
                if not message.headers:
                    plain[message.tenant] = headers
            try:
                produce(
                    message.topic,
                    value=message.value,
                    key=message.key,
                    headers=headers,
                    on_delivery=functools.partial(report, index),
                )
            except BufferError:
                if index == 0:
                    raise PublishUnavailableError("the producer queue is full") from None
                refused[index] = "the producer queue is full"
                report(index, refused[index])
            except KafkaException as exc:
                # A fatal producer (e.g. its idempotence state lost by a broker that came
                # back empty) refuses every message: the next publish makes a new one.
                error: KafkaError = exc.args[0]
                if error.fatal() or error.code() == KafkaError._FATAL:
                    self.fatal = error.str()
                if index == 0:
                    raise PublishUnavailableError(error.str()) from None
                refused[index] = error.str()
                report(index, refused[index])
        if not wait:
            return refused
        if messages:
            await asyncio.wait((batch.settled,), timeout=self.timeout_s + 2.0)
        return list(batch.outcome)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._producer is not None:
            self._producer.flush(1.0)


class _Batch:
    """The delivery reports of one :meth:`KafkaPublisher.publish` call.

    Reports arrive one by one on the producer's thread; the event loop is woken
    once, when the last of them is in, rather than once per message. Until its
    report, a message's outcome says it was not confirmed. The reports are
    counted by an ``itertools.count`` (whose ``next`` is atomic), not under a lock:
    a message refused at ``produce`` is reported from the loop's thread meanwhile.
    """

    __slots__ = ("_counted", "_loop", "_publisher", "_size", "outcome", "settled")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, size: int, publisher: KafkaPublisher
    ) -> None:
        self._loop = loop
        self._publisher = publisher
        self._size = size
        self._counted = itertools.count(1)
        self.outcome: list[str | None] = [f"not confirmed within {publisher.timeout_s:g} s"] * size
        self.settled: asyncio.Future[None] = loop.create_future()

    def delivered(
        self, index: int, err: KafkaError | str | None, _msg: Message | None = None
    ) -> None:
        """Record one message's report (``None``: delivered); called on the producer's thread
        (or the event loop's, for a message that could not be queued)."""
        if err is not None and not isinstance(err, str):
            if err.fatal():
                self._publisher.fatal = err.str()
            err = err.str()
        self.outcome[index] = err
        if next(self._counted) == self._size:
            self._loop.call_soon_threadsafe(_settle, self.settled)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class PubSubPublisher:
    """Publishes to one Pub/Sub topic with the official client; the tenant is an attribute."""

    def __init__(self, project: str, topic: str, *, timeout_s: float) -> None:
        import google.cloud.pubsub_v1 as pubsub_v1

        self._client = pubsub_v1.PublisherClient()
        self.topic_path = self._client.topic_path(project, topic)
        self.timeout_s = timeout_s

    async def publish(self, messages: Sequence[OutMessage], *, wait: bool) -> list[str | None]:
        futures: list[Future[str]] = []
        for message in messages:
            attributes = {TENANT_HEADER: message.tenant}
            attributes.update({k: v.decode() for k, v in message.headers})
            futures.append(self._client.publish(self.topic_path, message.value, **attributes))
        if not wait:
            return [None] * len(futures)
        wrapped = [asyncio.wrap_future(f) for f in futures]
        results = await asyncio.gather(
            *(asyncio.wait_for(w, self.timeout_s) for w in wrapped), return_exceptions=True
        )
        return [
            f"{type(r).__name__}: {r}" if isinstance(r, BaseException) else None for r in results
        ]

    def close(self) -> None:
        self._client.stop()
