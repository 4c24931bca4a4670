"""Bytewax sinks over the stores of ``sinks``; one connection per worker.

All three are at-least-once and rely on the stores' idempotent writes for an
exactly-once effect. A store that is down blocks the flow while writes are
retried with backoff (backpressure) instead of dropping results; only after
``give_up_s`` does the error stop the flow, so a restart replays from the
last snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import redis
import structlog
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from riffle.config.settings import Settings
from riffle.operators.records import DeadLetter, WindowResult, latest_per_window
from riffle.sinks.errors import SinkError
from riffle.sinks.redis.windows import RedisWindowStore
from riffle.sinks.topics.deadletters import DeadLetterError, DeadLetterProducer
from riffle.sinks.warehouse.base import Warehouse
from riffle.sinks.warehouse.batching import BatchWriter
from riffle.sinks.warehouse.engines import open_warehouse

X = TypeVar("X")
log = structlog.get_logger(__name__)
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, SinkError, DeadLetterError)
EXPIRE_EVERY_S = 3600.0
"""How often a warehouse sink applies the retention (DuckDB; BigQuery expires by itself)."""


def warehouse_settings(target: Settings | Path) -> Settings:
    """The settings of a warehouse target: settings as they are, a path as a DuckDB file."""
    return target if isinstance(target, Settings) else Settings(warehouse=f"duckdb:///{target}")


class _Partition(StatelessSinkPartition[X]):
    def __init__(self, name: str, write: Callable[[list[X]], None], give_up_s: float) -> None:
        self._name = name
        self._write = write
        self._retrying = Retrying(
            retry=retry_if_exception_type(RETRYABLE),
            wait=wait_exponential_jitter(multiplier=0.2, max=10),
            stop=stop_after_delay(give_up_s),
            reraise=True,
        )

    def write_batch(self, items: list[X]) -> None:
        for attempt in self._retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    log.warning(
                        "sink_retry", sink=self._name, attempt=attempt.retry_state.attempt_number
                    )
                self._write(items)


Writer = Callable[[Sequence[X]], None]
HotTarget = tuple[redis.Redis, str, int]
"""A Redis client, the key prefix and the hot TTL in seconds."""


class StoreSink(DynamicSink[X]):
    """Records into warehouse stores and, with ``redis`` (url, prefix, hot TTL in
    seconds), their Redis copy, in the order :meth:`writers` gives, retried as one
    batch. ``warehouse`` is settings naming either engine, or a DuckDB file. Every
    store write is an idempotent upsert, so a retried batch is harmless."""

    name = "stores"

    def __init__(
        self,
        warehouse: Settings | Path,
        give_up_s: float = 300.0,
        redis: tuple[str, str, int] | None = None,
    ) -> None:
        self.warehouse = warehouse_settings(warehouse)
        self.give_up_s = give_up_s
        self.redis = redis

    def writers(self, warehouse: Warehouse, hot: HotTarget | None) -> list[Writer[X]]:
        """The store writes of one batch, warehouse first."""
        raise NotImplementedError

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition[X]:
        hot = None
        if self.redis is not None:
            url, prefix, ttl = self.redis
            hot = (redis.Redis.from_url(url), prefix, ttl)
        writes = self.writers(open_warehouse(self.warehouse), hot)

        def write(records: list[X]) -> None:
            for w in writes:
                w(records)

        return _Partition(self.name, write, self.give_up_s)


class RedisWindowsSink(DynamicSink[WindowResult]):
    """Every window emission into the hot store; partials coalesced per batch."""

    def __init__(
        self, url: str, prefix: str, hot_ttl_seconds: int, give_up_s: float = 300.0
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.hot_ttl_seconds = hot_ttl_seconds
        self.give_up_s = give_up_s

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[WindowResult]:
        store = RedisWindowStore(redis.Redis.from_url(self.url), self.prefix, self.hot_ttl_seconds)
        return _Partition(
            "redis", lambda items: store.write(latest_per_window(items)), self.give_up_s
        )


class WarehouseSink(DynamicSink[WindowResult]):
    """Final windows into the warehouse of ``RIFFLE_WAREHOUSE`` (idempotent upserts).

    Each worker's partition owns a :class:`~sinks.warehouse.batching.BatchWriter`
    (batches by size and time, retries, bounded buffer) and returns from a
    batch only once its windows are written, so Bytewax never completes an
    epoch (or a recovery snapshot) ahead of the warehouse. Takes the settings,
    or a DuckDB file path for callers that have no settings. With a
    ``retention``, worker 0 applies it on start and every hour
    (:meth:`~sinks.warehouse.base.Warehouse.expire`). ``on_error`` is called for every
    failed write attempt.
    """

    def __init__(
        self,
        target: Settings | Path,
        give_up_s: float = 300.0,
        retention: timedelta | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.settings = warehouse_settings(target)
        self.give_up_s = give_up_s
        self.retention = retention
        self.on_error = on_error

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[WindowResult]:
        warehouse = open_warehouse(self.settings, self.retention)
        writer: BatchWriter[WindowResult] = BatchWriter(
            warehouse.upsert_windows,
            max_rows=self.settings.warehouse_batch_rows,
            max_delay_s=self.settings.warehouse_batch_seconds,
            max_buffer=max(self.settings.warehouse_buffer_rows, self.settings.warehouse_batch_rows),
            give_up_s=self.give_up_s,
            name=f"warehouse-{worker_index}",
            on_error=self.on_error,
        )
        expires = worker_index == 0 and self.retention is not None
        return _WarehousePartition(writer, warehouse if expires else None)


class _WarehousePartition(StatelessSinkPartition[WindowResult]):
    def __init__(self, writer: BatchWriter[WindowResult], expiring: Warehouse | None) -> None:
        self._writer = writer
        self._expiring = expiring
        self._next_expiry = time.monotonic()

    def write_batch(self, items: list[WindowResult]) -> None:
        self._writer.write(latest_per_window(items))
        if self._expiring is not None and time.monotonic() >= self._next_expiry:
            self._next_expiry = time.monotonic() + EXPIRE_EVERY_S
            try:
                removed = self._expiring.expire(int(time.time() * 1000))
            except SinkError as exc:  # retention is housekeeping: the next hour tries again
                log.warning("warehouse_expire_failed", error=str(exc))
            else:
                if any(removed.values()):
                    log.info("warehouse_expired", removed=removed)

    def close(self) -> None:
        self._writer.close()


class DeadLetterSink(DynamicSink[DeadLetter]):
    """Dead letters onto the dead-letter topic, confirmed by the broker."""

    def __init__(self, servers: str, topic: str, give_up_s: float = 300.0) -> None:
        self.servers = servers
        self.topic = topic
        self.give_up_s = give_up_s

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[DeadLetter]:
        producer = DeadLetterProducer(self.servers, self.topic)
        return _Partition("dead_letters", producer.send, self.give_up_s)
