"""The flow's outputs: one sink base, :class:`FlowSink`, under every store it writes.

A flow sink is a list of *writers* (callables taking a batch: a store's
idempotent upsert, a producer that waits for the broker), built once per
process. Each process of the flow has one sink partition (``p000``, ``p001``…;
:func:`emit` keys the stream to the local one, so nothing crosses processes),
which buffers what it is given and hands it to every writer, in order:

* at once when the sink's ``flush_s`` is 0 (the hot store: live values);
* otherwise at the first batch in a later period of ``flush_s`` than the
  oldest buffered item's (periods of the monotonic clock, the same for every
  sink, so the sinks of a process flush together and their warehouse writes
  share one visit of the file), when ``max_rows`` items are buffered, and
  always at the end of every epoch —
  :meth:`~bytewax.outputs.StatefulSinkPartition.snapshot` writes what is
  buffered before it returns, so Bytewax never completes an epoch (or a
  recovery snapshot) ahead of the stores. Warehouse writes, each a visit of a
  file or a request, are thereby about one a second whatever the batching.

Every store write is an idempotent upsert, so the exactly-once effect holds.
A store that is down blocks the flow while the batch is retried with backoff
(backpressure) instead of dropping results; only after ``give_up_s`` does the
error stop the flow, so a restart replays from the last snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import bytewax.operators as op
import redis
import structlog
from bytewax.dataflow import Stream
from bytewax.outputs import FixedPartitionedSink, Sink, StatefulSinkPartition
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

STORE_FLUSH_S = 5.0
"""How often model results, predictions and dead letters are written (besides every
epoch's end): each write visits the warehouse, which costs far more than the rows."""

Writer = Callable[[Sequence[X]], None]
HotTarget = tuple[redis.Redis, str, int]
"""A Redis client, the key prefix and the hot TTL in seconds."""


def warehouse_settings(target: Settings | Path) -> Settings:
    """The settings of a warehouse target: settings as they are, a path as a DuckDB file."""
    return target if isinstance(target, Settings) else Settings(warehouse=f"duckdb:///{target}")


def local_part(process_id: int) -> str:
    """The sink partition of a process of the flow (one per process)."""
    return f"p{process_id:03d}"


def emit(step_id: str, stream: Stream[Any], sink: Sink[Any] | FlowSink[Any]) -> None:
    """Write ``stream`` to ``sink``: a :class:`FlowSink` through this process's partition
    (see :meth:`FlowSink.place`), any other sink (a test's) as it is."""
    if isinstance(sink, FlowSink):
        part = sink.parts[0]
        op.output(step_id, op.key_on(f"{step_id}_local", stream, lambda _item: part), sink)
    else:
        op.output(step_id, stream, sink)


class FlowSink(FixedPartitionedSink[X, None]):
    """The base of every flow output; see the module docstring.

    Subclasses say what :meth:`writers` a process uses; ``flush_s`` and
    ``max_rows`` say how much they buffer (0: nothing).
    """

    name = "sink"

    def __init__(self, *, give_up_s: float = 300.0, flush_s: float = 0.0, max_rows: int = 0):
        self.give_up_s = give_up_s
        self.flush_s = flush_s
        self.max_rows = max_rows
        self.parts = [local_part(0)]

    def place(self, process_id: int) -> None:
        """Make this the sink of process ``process_id`` of the flow (before it is built)."""
        self.parts = [local_part(process_id)]

    def writers(self, part: str) -> list[Writer[X]]:
        """The writes of one flush, in order, for the process owning ``part``."""
        raise NotImplementedError

    def closers(self) -> list[Callable[[], None]]:
        """What to release when a bounded flow ends (after a last flush)."""
        return []

    def list_parts(self) -> list[str]:
        return self.parts

    def part_fn(self, item_key: str) -> int:
        return int(item_key.removeprefix("p"))

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> StatefulSinkPartition[X, None]:
        writes = self.writers(for_part)
        return FlowPartition(self, writes, self.closers())


Output = Sink[X] | FlowSink[X]
"""Where a stage's records go: a flow sink, or any Bytewax sink (tests)."""


class FlowPartition(StatefulSinkPartition[X, None]):
    """One process's partition of a :class:`FlowSink`: buffer, flush, retry."""

    def __init__(
        self,
        sink: FlowSink[X],
        writes: list[Writer[X]],
        closers: list[Callable[[], None]],
    ) -> None:
        self._name = sink.name
        self._writes = writes
        self._closers = closers
        self._flush_s = sink.flush_s
        self._max_rows = sink.max_rows
        self._buffer: list[X] = []
        self._since = 0.0
        self._retrying = Retrying(
            retry=retry_if_exception_type(RETRYABLE),
            wait=wait_exponential_jitter(multiplier=0.2, max=10),
            stop=stop_after_delay(sink.give_up_s),
            reraise=True,
        )

    def write_batch(self, values: list[X]) -> None:
        if not values:
            return
        now = time.monotonic()
        if not self._buffer:
            self._since = now
        self._buffer.extend(values)
        if (
            self._flush_s <= 0
            or len(self._buffer) >= self._max_rows > 0
            or now // self._flush_s != self._since // self._flush_s
        ):
            self.flush()

    def snapshot(self) -> None:
        self.flush()

    def close(self) -> None:
        self.flush()
        for close in self._closers:
            close()

    def flush(self) -> None:
        """Hand everything buffered to every writer; retried as one batch."""
        if not self._buffer:
            return
        items = self._buffer
        for attempt in self._retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    log.warning(
                        "sink_retry", sink=self._name, attempt=attempt.retry_state.attempt_number
                    )
                for write in self._writes:
                    write(items)
        self._buffer = []


class StoreSink(FlowSink[X]):
    """Records into warehouse stores and, with ``redis`` (url, prefix, hot TTL in
    seconds), their Redis copy, in the order :meth:`stores` gives, every ``flush_s``
    (and at each epoch's end). ``warehouse`` is settings naming either engine, or a
    DuckDB file."""

    name = "stores"

    def __init__(
        self,
        warehouse: Settings | Path,
        give_up_s: float = 300.0,
        redis: tuple[str, str, int] | None = None,
        flush_s: float = STORE_FLUSH_S,
    ) -> None:
        super().__init__(give_up_s=give_up_s, flush_s=flush_s)
        self.warehouse = warehouse_settings(warehouse)
        self.redis = redis

    def stores(self, warehouse: Warehouse, hot: HotTarget | None) -> list[Writer[X]]:
        """The store writes of one batch, warehouse first."""
        raise NotImplementedError

    def writers(self, part: str) -> list[Writer[X]]:
        hot = None
        if self.redis is not None:
            url, prefix, ttl = self.redis
            hot = (redis.Redis.from_url(url), prefix, ttl)
        return self.stores(open_warehouse(self.warehouse), hot)


class RedisWindowsSink(FlowSink[WindowResult]):
    """Every window emission into the hot store at once; partials coalesced per batch."""

    name = "redis"

    def __init__(
        self, url: str, prefix: str, hot_ttl_seconds: int, give_up_s: float = 300.0
    ) -> None:
        super().__init__(give_up_s=give_up_s)
        self.url = url
        self.prefix = prefix
        self.hot_ttl_seconds = hot_ttl_seconds

    def writers(self, part: str) -> list[Writer[WindowResult]]:
        store = RedisWindowStore(redis.Redis.from_url(self.url), self.prefix, self.hot_ttl_seconds)
        return [lambda items: store.write(latest_per_window(list(items)))]


class WarehouseSink(FlowSink[WindowResult]):
    """Final windows into the warehouse of ``RIFFLE_WAREHOUSE`` (idempotent upserts).

    Buffered for up to ``RIFFLE_WAREHOUSE_BATCH_SECONDS`` (and to each epoch's
    end; see the module docstring), then written through a
    :class:`~sinks.warehouse.batching.BatchWriter` (requests of at most
    ``RIFFLE_WAREHOUSE_BATCH_ROWS`` rows, retries); a flush returns once its
    windows are written. Takes the settings, or a DuckDB file path for callers
    that have no settings. With a ``retention``, process 0 applies it on start
    and every hour (:meth:`~sinks.warehouse.base.Warehouse.expire`). ``on_error`` is
    called for every failed write attempt.
    """

    name = "warehouse"

    def __init__(
        self,
        target: Settings | Path,
        give_up_s: float = 300.0,
        retention: timedelta | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.settings = warehouse_settings(target)
        super().__init__(
            give_up_s=give_up_s,
            flush_s=self.settings.warehouse_batch_seconds,
            max_rows=self.settings.warehouse_buffer_rows,
        )
        self.retention = retention
        self._writers: list[BatchWriter[WindowResult]] = []
        self.on_error = on_error

    def writers(self, part: str) -> list[Writer[WindowResult]]:
        warehouse = open_warehouse(self.settings, self.retention)
        writer: BatchWriter[WindowResult] = BatchWriter(
            warehouse.upsert_windows,
            max_rows=self.settings.warehouse_batch_rows,
            max_delay_s=self.settings.warehouse_batch_seconds,
            max_buffer=max(self.settings.warehouse_buffer_rows, self.settings.warehouse_batch_rows),
            give_up_s=self.give_up_s,
            name=f"warehouse-{part}",
            on_error=self.on_error,
        )
        self._writers.append(writer)
        expiring = warehouse if part == local_part(0) and self.retention is not None else None
        return [_Expiring(writer, expiring)]

    def closers(self) -> list[Callable[[], None]]:
        return [writer.close for writer in self._writers]


class _Expiring:
    """Writes finals, and (given the warehouse) applies its retention every hour."""

    def __init__(self, writer: BatchWriter[WindowResult], expiring: Warehouse | None) -> None:
        self._writer = writer
        self._expiring = expiring
        self._next_expiry = time.monotonic()

    def __call__(self, items: Sequence[WindowResult]) -> None:
        self._writer.write(latest_per_window(list(items)))
        if self._expiring is not None and time.monotonic() >= self._next_expiry:
            self._next_expiry = time.monotonic() + EXPIRE_EVERY_S
            try:
                removed = self._expiring.expire(int(time.time() * 1000))
            except SinkError as exc:  # retention is housekeeping: the next hour tries again
                log.warning("warehouse_expire_failed", error=str(exc))
            else:
                if any(removed.values()):
                    log.info("warehouse_expired", removed=removed)


class DeadLetterSink(FlowSink[DeadLetter]):
    """Dead letters onto the dead-letter topic, confirmed by the broker, every
    :data:`STORE_FLUSH_S` (and at each epoch's end)."""

    name = "dead_letters"

    def __init__(self, servers: str, topic: str, give_up_s: float = 300.0) -> None:
        super().__init__(give_up_s=give_up_s, flush_s=STORE_FLUSH_S)
        self.servers = servers
        self.topic = topic

    def writers(self, part: str) -> list[Writer[DeadLetter]]:
        return [DeadLetterProducer(self.servers, self.topic).send]
