"""The notifier's loop: consume transitions, dispatch, commit state and outbox together,
deliver from the outbox on worker threads (see the package docstring)."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson
import redis as redis_client
import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from riffle.config.errors import RiffleError
from riffle.config.notifications import NotificationsSpec
from riffle.dataflows.notifier.feeds import TransitionFeed
from riffle.dataflows.notifier.metrics import NotifyMetrics
from riffle.operators.alerts.transitions import AlertTransition
from riffle.operators.notify.dispatcher import Dispatcher
from riffle.operators.notify.groups import Notification
from riffle.sinks.channels.alertmanager import AlertmanagerChannel
from riffle.sinks.channels.base import Channel, ChannelError, deliver
from riffle.sinks.redis.acks import AckStore
from riffle.sinks.redis.notify_state import LeaseLostError, NotifyState
from riffle.sinks.redis.silences import Silence, SilenceStore
from riffle.sinks.redis.undelivered import RedisUndelivered

log = structlog.get_logger(__name__)


class NotifierError(RiffleError):
    """The notifier cannot run (no receivers, lost its lease)."""


@dataclass(frozen=True)
class _Item:
    key: str
    channel: Channel
    note: Notification


class Notifier:
    """Consumes ``feed`` (the alerts topic or subscription) and delivers what the
    dispatcher decides (see module doc).

    Call :meth:`start`, then :meth:`step` in a loop (or :meth:`run`), then :meth:`close`.
    """

    def __init__(
        self,
        spec: NotificationsSpec,
        channels: Mapping[str, list[Channel]],
        *,
        feed: TransitionFeed,
        redis_url: str,
        prefix: str,
        lease_s: float = 15.0,
        workers: int = 4,
        resend_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.spec = spec
        self.channels = dict(channels)
        self.feed = feed
        self.lease_ms = int(lease_s * 1000)
        self.workers = workers
        self.resend_s = resend_s
        self.clock = clock
        self.metrics = NotifyMetrics(registry)
        self.metrics.expect(self.channels)
        client = redis_client.Redis.from_url(redis_url)
        self.state = NotifyState(client, prefix, feed.name)
        self.silences = SilenceStore(client, prefix)
        self.acks = AckStore(client, prefix)
        self.dead = RedisUndelivered(client, prefix)
        self.owner = uuid.uuid4().hex
        self._silence_cache: dict[str, list[Silence]] = {}
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._open = False
        self._last_resend = 0.0
        self.dispatcher = Dispatcher(spec, silenced=self._silenced, acked=self.acks.acked)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _silenced(self, tenant: str, labels: dict[str, str], now: int) -> bool:
        found = self._silence_cache.get(tenant)
        if found is None:
            found = self._silence_cache[tenant] = self.silences.list(tenant)
        return any(s.mutes(labels, now) for s in found)

    def start(self, wait_s: float | None = 120.0, stop: threading.Event | None = None) -> bool:
        """Take the lease, load the committed state, re-queue the outbox and start reading.

        Waits for another notifier's lease up to ``wait_s`` (``None``: as long as it takes,
        a standby) and raises :class:`NotifierError` after; returns False when ``stop`` is
        set while waiting.
        """
        deadline = None if wait_s is None else time.monotonic() + wait_s
        while not self.state.acquire(self.owner, self.lease_ms):
            if deadline is not None and time.monotonic() > deadline:
                raise NotifierError("another notifier holds the lease")
            if stop is not None and stop.wait(min(1.0, self.lease_ms / 4000)):
                return False
            if stop is None:
                time.sleep(min(1.0, self.lease_ms / 4000))
        groups, seen, offsets = self.state.load()
        self.dispatcher.groups.update(groups)
        self.dispatcher.seen.update(seen)
        self.metrics.groups.set(len(groups))
        self.feed.open(offsets)
        self._open = True
        for _ in range(self.workers):
            thread = threading.Thread(target=self._deliver_loop, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._enqueue(self.state.outbox())
        log.info("notifier_start", owner=self.owner, groups=len(groups), feed=self.feed.name)
        return True

    def step(self, max_wait_s: float = 0.2) -> int:
        """Read what arrived (waiting at most until the next group is due), flush due
        groups, commit, tell the feed (which may then acknowledge what it read), queue
        deliveries; returns how many notifications were made."""
        assert self._open, "start() first"
        if not self.state.renew(self.owner, self.lease_ms):
            raise NotifierError("the notifier lost its lease; another one took over")
        wake = self.dispatcher.next_wakeup()
        wait = (
            max_wait_s
            if wake is None
            else max(0.0, min(max_wait_s, (wake - self._now_ms()) / 1000))
        )
        messages = self.feed.read(wait)
        now = self._now_ms()
        for value, where in messages:
            try:
                t = AlertTransition.from_json(value)
            except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
                log.warning("notifier_bad_transition", at=where, error=str(exc))
                self.metrics.transitions.labels("bad").inc()
                continue
            applied = self.dispatcher.ingest(t, now)
            self.metrics.transitions.labels("applied" if applied else "duplicate").inc()
        self._silence_cache.clear()
        notes = self.dispatcher.due(self._now_ms())
        queued = {
            f"{n.dedup_key}:{c.kind}": _Item(f"{n.dedup_key}:{c.kind}", c, n)
            for n in notes
            for c in self.channels.get(n.receiver, [])
        }
        groups, removed, seen = self.dispatcher.take_changes()
        offsets = self.feed.offsets()
        if groups or removed or seen or offsets or queued:
            try:
                self.state.commit(
                    self.owner,
                    groups,
                    removed,
                    seen,
                    offsets,
                    {k: i.note for k, i in queued.items()},
                )
            except LeaseLostError as exc:
                raise NotifierError(f"stopping: {exc}") from exc
        # Only now (state committed, or nothing read changed it) may the feed let go.
        self.feed.committed()
        for item in queued.values():
            self._put(item)
        self.metrics.groups.set(len(self.dispatcher.groups))
        self._resend_alertmanager()
        return len(notes)

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set."""
        while not stop.is_set():
            self.step()

    def idle(self) -> bool:
        """No delivery queued or in flight (for tests and shutdown)."""
        with self._lock:
            return not self._in_flight

    def close(self) -> None:
        """Stop the delivery threads after the queue drains, release the lease."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)
        if self._open:
            self.feed.close()
        self.state.release(self.owner)

    def _enqueue(self, outbox: Mapping[str, Notification]) -> None:
        for key, note in outbox.items():
            kind = key.rsplit(":", 1)[1]
            channel = next(
                (c for c in self.channels.get(note.receiver, []) if c.kind == kind), None
            )
            if channel is None:  # the receiver lost this channel since: nothing to deliver to
                self.state.done(key)
                continue
            self._put(_Item(key, channel, note))

    def _put(self, item: _Item) -> None:
        with self._lock:
            if item.key in self._in_flight:
                return
            self._in_flight.add(item.key)
        self._queue.put(item)

    def _deliver_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._deliver(item)
            except redis_client.RedisError as exc:
                # Still in the outbox: the next start delivers it.
                log.warning("notifier_state_error", item=item.key, error=str(exc))
            except Exception:
                # A bug in a channel must not end this thread; the item stays in the
                # outbox and is delivered by the next start.
                log.exception("notifier_delivery_bug", item=item.key)
            finally:
                with self._lock:
                    self._in_flight.discard(item.key)

    def _deliver(self, item: _Item) -> None:
        if not self.state.holds(self.owner):  # the new owner delivers it from the outbox
            return
        if self.state.delivered(item.key):
            self.state.done(item.key)
            return
        reason = deliver(item.channel, item.note)
        outcome = "delivered" if reason is None else "dead"
        if reason is not None:
            self.dead(item.note, item.channel.kind, reason)
        else:
            self.metrics.delay.labels(item.channel.kind).observe(
                max(0.0, self.clock() - item.note.made_at / 1000)
            )
        self.state.done(item.key)
        self.metrics.deliveries.labels(item.note.receiver, item.channel.kind, outcome).inc()

    def _resend_alertmanager(self) -> None:
        if self.clock() - self._last_resend < self.resend_s:
            return
        self._last_resend = self.clock()
        for receiver, channels in self.channels.items():
            for channel in channels:
                if isinstance(channel, AlertmanagerChannel):
                    try:
                        channel.resend(self.dispatcher.active_alerts(receiver))
                    except ChannelError as exc:
                        log.warning("alertmanager_resend_failed", receiver=receiver, error=str(exc))
