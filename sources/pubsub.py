"""Pub/Sub input: a streaming pull over one subscription, shaped like the Kafka source.

Emits ``(partition_key, PartitionPoll)`` like :mod:`sources.kafka`, so the
same flow runs on either; the one partition is ``pubsub:<subscription>`` and
the "offset" is a per-process sequence number (Pub/Sub has none). The tenant
comes from the message attribute ``riffle-tenant`` (set by the ingest API).

Delivery: the official client's streaming pull with flow control (at most
``max_messages`` / ``max_bytes`` outstanding, so a slow flow is not flooded).
A message is acknowledged only after the epoch that carried it into the flow
and the next one have both closed — by then Bytewax has run it through every
step of that epoch — or, for a bounded read, when the flow ends cleanly.
Messages of a crashed or stopped process are never acknowledged and are
redelivered by Pub/Sub after their ack deadline; the sinks are idempotent,
so a redelivery rewrites, never double-writes, a window that was already
stored.
"""

from __future__ import annotations

import queue
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from riffle.sources.kafka import TENANT_HEADER, PartitionPoll

log = structlog.get_logger(__name__)


def partition_key(subscription: str) -> str:
    """The key naming a subscription throughout the flow."""
    return f"pubsub:{subscription}"


class _SubscriptionReader(StatefulSourcePartition[tuple[str, PartitionPoll], int]):
    def __init__(
        self,
        project: str,
        subscription: str,
        *,
        batch_size: int,
        heartbeat_ms: int,
        max_messages: int,
        max_bytes: int,
        stop_after: int | None,
        resume: int,
    ) -> None:
        import google.cloud.pubsub_v1 as pubsub_v1

        self._client = pubsub_v1.SubscriberClient()
        self._path = path = self._client.subscription_path(project, subscription)
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._future = self._client.subscribe(
            path,
            callback=self._inbox.put,
            flow_control=pubsub_v1.types.FlowControl(
                max_messages=max_messages, max_bytes=max_bytes
            ),
        )
        self._key = partition_key(subscription)
        self._batch_size = batch_size
        self._heartbeat_s = heartbeat_ms / 1000
        self._last_emit = 0.0
        self._idle = False
        self._seq = resume
        self._stop_after = stop_after
        self._emitted_total = 0
        self._current: list[Any] = []  # emitted in the running epoch
        self._previous: list[Any] = []  # emitted in the epoch before
        self._finished = False

    def next_batch(self) -> list[tuple[str, PartitionPoll]]:
        if self._stop_after is not None and self._emitted_total >= self._stop_after:
            self._finished = True
            raise StopIteration
        messages: list[tuple[bytes | None, str | None, int]] = []
        limit = self._batch_size
        if self._stop_after is not None:
            limit = min(limit, self._stop_after - self._emitted_total)
        while len(messages) < limit:
            try:
                message = self._inbox.get_nowait()
            except queue.Empty:
                break
            tenant = message.attributes.get(TENANT_HEADER) or None
            messages.append((bytes(message.data), tenant, self._seq))
            self._seq += 1
            self._current.append(message)
        self._emitted_total += len(messages)
        now = time.monotonic()
        self._idle = not messages
        if messages or now - self._last_emit >= self._heartbeat_s:
            self._last_emit = now
            return [(self._key, PartitionPoll(self._key, messages, at_end=not messages))]
        return []

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + timedelta(milliseconds=20) if self._idle else None

    def snapshot(self) -> int:
        # End of an epoch: what the epoch before carried has been through the flow.
        for message in self._previous:
            message.ack()
        self._previous, self._current = self._current, []
        return self._seq

    def close(self) -> None:
        if self._finished:
            done = [*self._previous, *self._current]
            for message in done:
                message.ack()
            # The client batches acks and may drop a batch at shutdown: confirm them here.
            for start in range(0, len(done), 1000):
                ack_ids = [m.ack_id for m in done[start : start + 1000]]
                self._client.acknowledge(subscription=self._path, ack_ids=ack_ids)
        else:
            for message in (*self._previous, *self._current):
                message.nack()
        self._previous, self._current = [], []
        self._future.cancel()
        try:
            self._future.result(timeout=5)
        except Exception as exc:  # noqa: BLE001 - cancellation surfaces as an error; log it
            log.debug("pubsub_stream_closed", error=repr(exc))
        self._client.close()


class PubSubSource(FixedPartitionedSource[tuple[str, PartitionPoll], int]):
    """One Pub/Sub subscription (``PUBSUB_EMULATOR_HOST`` is honoured by the client).

    ``stop_after`` ends the read after that many messages (bounded runs:
    tests, backfills); ``None`` tails forever.
    """

    def __init__(
        self,
        project: str,
        subscription: str,
        *,
        batch_size: int = 5000,
        heartbeat_ms: int = 1000,
        max_messages: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        stop_after: int | None = None,
    ) -> None:
        self.project = project
        self.subscription = subscription
        self.batch_size = batch_size
        self.heartbeat_ms = heartbeat_ms
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.stop_after = stop_after

    def list_parts(self) -> list[str]:
        return [partition_key(self.subscription)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _SubscriptionReader:
        return _SubscriptionReader(
            self.project,
            self.subscription,
            batch_size=self.batch_size,
            heartbeat_ms=self.heartbeat_ms,
            max_messages=self.max_messages,
            max_bytes=self.max_bytes,
            stop_after=self.stop_after,
            resume=resume_state or 0,
        )
