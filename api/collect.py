"""What event collection needs in one app: keys, limits, schemas, publisher, dead-letter store.

Lives on ``app.state.collect`` beside :class:`api.deps.Services`; built by
:func:`build_collect` when the app is built, connects nothing until used.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis
import structlog

from riffle.api.publisher import EventPublisher, KafkaPublisher, PubSubPublisher
from riffle.api.ratelimit import RateLimiter
from riffle.config.registry import load_schemas
from riffle.config.settings import Settings
from riffle.operators.records import DeadLetter
from riffle.operators.schemas import EventValidator
from riffle.sinks.errors import SinkError
from riffle.sinks.redis.api_keys import KeyStore
from riffle.sinks.redis.idempotency import IdempotencyStore
from riffle.sinks.warehouse.base import Warehouse
from riffle.sinks.warehouse.dead_letters import DeadLetterStore, WarehouseDeadLetters

log = structlog.get_logger(__name__)


class Schemas:
    """The current compiled registry; :meth:`reload` swaps in what is on disk now."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.validator = EventValidator(load_schemas(settings.schemas_dir))

    def reload(self) -> EventValidator:
        """Compile the registry again (after a schema fix); raises on a broken file."""
        self.validator = EventValidator(load_schemas(self._settings.schemas_dir))
        return self.validator


class DeadLetterRecorder:
    """Writes dead letters to the store from a background thread, in batches.

    The ingest path must not wait for the warehouse file (another process may
    hold its lock); :meth:`flush` waits until everything recorded so far is
    stored, so a reader in this process sees its own writes.
    """

    def __init__(self, store: DeadLetterStore, interval_s: float = 1.0) -> None:
        self._store = store
        self._interval = interval_s
        self._cond = threading.Condition()
        self._pending: list[DeadLetter] = []
        self._queued = 0
        self._written = 0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._flushing = 0

    def record(self, letters: Sequence[DeadLetter]) -> None:
        """Queue letters for the store; returns at once."""
        if not letters:
            return
        with self._cond:
            self._pending.extend(letters)
            self._queued += len(letters)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="riffle-dead-letters", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout_s: float = 15.0) -> None:
        """Wait until every letter recorded before the call is stored."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            target = self._queued
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._written < target:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise SinkError(
                            "dead letters not stored in time (is the warehouse locked?)"
                        )
                    self._cond.wait(min(left, 0.05))
            finally:
                self._flushing -= 1

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait(self._interval)
                if not self._pending and self._stopping:
                    return
                # Gather for a while: one open of the warehouse file per batch, not per request.
                due = time.monotonic() + self._interval
                while not (self._stopping or self._flushing) and time.monotonic() < due:
                    self._cond.wait(due - time.monotonic())
                batch, self._pending = self._pending, []
            try:
                self._store.write(batch)
            except SinkError as exc:
                log.warning("dead_letters_store_retry", error=str(exc), letters=len(batch))
                with self._cond:
                    self._pending[:0] = batch
                time.sleep(0.5)
                continue
            with self._cond:
                self._written += len(batch)
                self._cond.notify_all()

    def close(self) -> None:
        """Store what is pending (briefly) and stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)


@dataclass
class Collect:
    """Event collection's services."""

    settings: Settings
    keys: KeyStore
    limiter: RateLimiter
    schemas: Schemas
    publisher: EventPublisher
    dead_publisher: EventPublisher | None
    letters: DeadLetterStore
    recorder: DeadLetterRecorder
    idempotency: IdempotencyStore
    closed: list[str] = field(default_factory=list)

    def close(self) -> None:
        """Release clients and store pending dead letters."""
        self.recorder.close()
        self.publisher.close()
        if self.dead_publisher is not None and self.dead_publisher is not self.publisher:
            self.dead_publisher.close()


def build_collect(settings: Settings, client: redis.Redis, warehouse: Warehouse) -> Collect:
    """Collection services over the settings' Redis and broker, and ``warehouse``."""
    timeout = settings.ingest_delivery_timeout_seconds
    publisher: EventPublisher
    dead_publisher: EventPublisher | None
    if settings.ingest_broker == "pubsub":
        # No Kafka client at all: a Google Cloud deployment may have no broker.
        publisher = PubSubPublisher(
            settings.pubsub_project, settings.pubsub_topic, timeout_s=timeout
        )
        dead_publisher = (
            PubSubPublisher(
                settings.pubsub_project, settings.pubsub_flow_deadletter_topic, timeout_s=timeout
            )
            if settings.source == "pubsub"
            else None
        )
    else:
        publisher = dead_publisher = KafkaPublisher(settings.kafka_servers, timeout_s=timeout)
    letters = WarehouseDeadLetters(warehouse)
    return Collect(
        settings=settings,
        keys=KeyStore(client, settings.redis_prefix, settings.api_key_pepper.get_secret_value()),
        limiter=RateLimiter(client, settings.redis_prefix),
        schemas=Schemas(settings),
        publisher=publisher,
        dead_publisher=dead_publisher,
        letters=letters,
        recorder=DeadLetterRecorder(letters),
        idempotency=IdempotencyStore(
            client,
            settings.redis_prefix,
            settings.ingest_idempotency_ttl_seconds,
            # Longer than any request takes to publish: then the claim lapses by itself.
            claim_s=2 * timeout + 30,
        ),
    )
