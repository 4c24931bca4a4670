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
        self._fatal: str | None = None

    def _ensure(self) -> Producer:
        with self._lock:
            if self._fatal is not None and self._producer is not None:
                log.warning("kafka_producer_recreated", error=self._fatal)
                self._producer = None
                self._fatal = None
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
                self._fatal = exc.args[0].str()
                self._stop.wait(0.05)

    async def publish(self, messages: Sequence[OutMessage], *, wait: bool) -> list[str | None]:
        producer = self._ensure()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[str | None]] = []

        def on_delivery_for(future: asyncio.Future[str | None]) -> Any:
            def on_delivery(err: KafkaError | None, _msg: Message) -> None:
                if err is not None and err.fatal():
                    self._fatal = err.str()
                text = None if err is None else err.str()
                loop.call_soon_threadsafe(_settle, future, text)

            return on_delivery

        for message in messages:
            future: asyncio.Future[str | None] = loop.create_future()
            try:
                producer.produce(
                    message.topic,
                    value=message.value,
                    key=message.key,
                    headers=[(TENANT_HEADER, message.tenant.encode()), *message.headers],
                    on_delivery=on_delivery_for(future),
                )
            except BufferError:
                if not futures:
                    raise PublishUnavailableError("the producer queue is full") from None
                future.set_result("the producer queue is full")
            except KafkaException as exc:
                # A fatal producer (e.g. its idempotence state lost by a broker that came
                # back empty) refuses every message: the next publish makes a new one.
                error: KafkaError = exc.args[0]
                if error.fatal() or error.code() == KafkaError._FATAL:
                    self._fatal = error.str()
                if not futures:
                    raise PublishUnavailableError(error.str()) from None
                future.set_result(error.str())
            futures.append(future)
        if not wait:
            return [None if f.done() is False else f.result() for f in futures]
        done, _ = await asyncio.wait(futures, timeout=self.timeout_s + 2.0) if futures else ((), ())
        del done
        return [
            f.result() if f.done() else f"not confirmed within {self.timeout_s:g} s"
            for f in futures
        ]

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._producer is not None:
            self._producer.flush(1.0)


def _settle(future: asyncio.Future[str | None], text: str | None) -> None:
    if not future.done():
        future.set_result(text)


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
