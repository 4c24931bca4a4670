"""The notifier: a process of its own that reads ``riffle.alerts`` and delivers notifications.

```
riffle.alerts ──▶ Dispatcher (routes, groups, inhibition, mute intervals, silences, acks)
 (Kafka, from        │ one step: consume ─▶ ingest ─▶ flush due groups
  the dataflow)      ▼
        Redis MULTI: groups + seen + offsets + outbox entries ──▶ delivery threads
                                                                   │ retries with backoff
                                                                   ▼
                                          channel (webhook/Slack/email/Alertmanager)
                                          Redis MULTI: outbox entry out, delivery logged
                                          (or dead letter in {prefix}:alerts:undelivered)
```

Why a separate process and not a Bytewax step: grouping timers are wall-clock and
deliveries are side effects that cannot be replayed; a dataflow resumed from a
snapshot replays input and would re-send what it sent after the snapshot. Here the
input offsets, the groups and the queued notifications are committed together, so:

* a restart resumes from the committed offsets with the committed groups — no
  transition is read twice into a group, and none is skipped;
* a notification is queued in the outbox in the same transaction that consumed
  its input, so a crash cannot lose it; it leaves the outbox only after a
  receiver accepted it (or it was dead-lettered). A crash between the receiver's
  2xx and that Redis write is the one case of a re-send, with the same dedup key;
* the dataflow delivers transitions at least once (a replay after its own
  restart re-produces them): ``seen`` makes a transition already applied a no-op.

One notifier runs at a time (a Redis lease, renewed every step); a second one
waits, so two replicas give fail-over, not double sends.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson
import redis as redis_client
import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from riffle.config.errors import RiffleError
from riffle.config.notifications import (
    NotificationsSpec,
    ReceiverSpec,
    RootRoute,
    WebhookConfig,
)
from riffle.config.settings import Settings
from riffle.config.spec import PipelineSpec, load_spec
from riffle.dataflows.alerts import ALERTS_TOPIC
from riffle.operators.alerts import AlertTransition
from riffle.operators.notify import Dispatcher, Notification
from riffle.sinks.channels.alertmanager import AlertmanagerChannel
from riffle.sinks.channels.base import Channel, ChannelError, deliver
from riffle.sinks.channels.registry import build_receiver
from riffle.sinks.redis.acks import AckStore
from riffle.sinks.redis.notify_state import LeaseLostError, NotifyState
from riffle.sinks.redis.silences import Silence, SilenceStore
from riffle.sinks.redis.undelivered import RedisUndelivered
from riffle.sources.topics import ensure_topics

log = structlog.get_logger(__name__)
LEGACY_SECRET_ENV = "RIFFLE_ALERT_WEBHOOK_SECRET"  # noqa: S105 - a variable name


class NotifierError(RiffleError):
    """The notifier cannot run (no receivers, lost its lease)."""


def notifications_for(spec: PipelineSpec, settings: Settings) -> NotificationsSpec | None:
    """The spec's ``notifications:``; else, deprecated, a receiver made of
    ``RIFFLE_ALERT_WEBHOOK_URL``/``_SECRET`` (one group per alert, no wait); else None."""
    if spec.notifications is not None:
        return spec.notifications
    if not settings.alert_webhook_url:
        return None
    log.warning(
        "deprecated_setting",
        setting="RIFFLE_ALERT_WEBHOOK_URL",
        use="a notifications: section in the spec (docs/alerts.md)",
    )
    hook = WebhookConfig(url=settings.alert_webhook_url, secret_env=LEGACY_SECRET_ENV)
    return NotificationsSpec(
        receivers=[ReceiverSpec(name="webhook", webhook=hook)],
        route=RootRoute.model_validate(
            {"receiver": "webhook", "group_by": ["..."], "group_wait": "0s", "group_interval": "1m"}
        ),
    )


def build_channels(
    spec: NotificationsSpec, environ: Mapping[str, str] | None = None
) -> dict[str, list[Channel]]:
    """Each receiver's channels with their secrets read from ``environ`` (default: the
    process environment).

    Raises :class:`~config.notifications.NotificationConfigError` naming a missing variable.
    """
    env = os.environ if environ is None else environ
    return {r.name: build_receiver(r, env) for r in spec.receivers}


class NotifyMetrics:
    """``riffle_notify_*``: deliveries by outcome, delay from flush to delivery, groups."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.deliveries = Counter(
            "riffle_notify_deliveries",
            "Notification deliveries by receiver, channel and outcome (delivered, dead).",
            ["receiver", "channel", "outcome"],
            registry=registry,
        )
        self.delay = Histogram(
            "riffle_notify_delivery_delay_seconds",
            "Wall-clock time from a group's flush to the channel accepting the notification.",
            ["channel"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.groups = Gauge("riffle_notify_groups", "Aggregation groups held.", registry=registry)
        self.transitions = Counter(
            "riffle_notify_transitions",
            "Transitions read from the alerts topic, by outcome (applied, duplicate, bad).",
            ["outcome"],
            registry=registry,
        )

    def expect(self, channels: Mapping[str, list[Channel]]) -> None:
        """Expose every receiver's channels at 0 deliveries of each outcome from the start,
        so alert rules on their rate see a series before the first delivery."""
        for receiver, kinds in channels.items():
            for channel in kinds:
                for outcome in ("delivered", "dead"):
                    self.deliveries.labels(receiver, channel.kind, outcome)


@dataclass(frozen=True)
class _Item:
    key: str
    channel: Channel
    note: Notification


class Notifier:
    """Consumes the alerts topic and delivers what the dispatcher decides (see module doc).

    Call :meth:`start`, then :meth:`step` in a loop (or :meth:`run`), then :meth:`close`.
    """

    def __init__(
        self,
        spec: NotificationsSpec,
        channels: Mapping[str, list[Channel]],
        *,
        servers: str,
        redis_url: str,
        prefix: str,
        topic: str = ALERTS_TOPIC,
        topic_partitions: int = 4,
        lease_s: float = 15.0,
        workers: int = 4,
        resend_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.spec = spec
        self.channels = dict(channels)
        self.servers = servers
        self.topic = topic
        self.topic_partitions = topic_partitions
        self.lease_ms = int(lease_s * 1000)
        self.workers = workers
        self.resend_s = resend_s
        self.clock = clock
        self.metrics = NotifyMetrics(registry)
        self.metrics.expect(self.channels)
        client = redis_client.Redis.from_url(redis_url)
        self.state = NotifyState(client, prefix, topic)
        self.silences = SilenceStore(client, prefix)
        self.acks = AckStore(client, prefix)
        self.dead = RedisUndelivered(client, prefix)
        self.owner = uuid.uuid4().hex
        self.offsets: dict[int, int] = {}
        self.dirty_offsets: dict[int, int] = {}
        self._silence_cache: dict[str, list[Silence]] = {}
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._consumer: Consumer | None = None
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
        groups, seen, self.offsets = self.state.load()
        self.dispatcher.groups.update(groups)
        self.dispatcher.seen.update(seen)
        self.metrics.groups.set(len(groups))
        ensure_topics(self.servers, [self.topic], self.topic_partitions)
        consumer = Consumer(
            {
                "bootstrap.servers": self.servers,
                "group.id": f"riffle-notifier-{self.owner}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        parts = consumer.list_topics(self.topic, timeout=30).topics[self.topic].partitions
        consumer.assign(
            [TopicPartition(self.topic, p, self.offsets.get(p, OFFSET_BEGINNING)) for p in parts]
        )
        self._consumer = consumer
        for _ in range(self.workers):
            thread = threading.Thread(target=self._deliver_loop, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._enqueue(self.state.outbox())
        log.info("notifier_start", owner=self.owner, groups=len(groups), partitions=len(parts))
        return True

    def step(self, max_wait_s: float = 0.2) -> int:
        """Read what arrived (waiting at most until the next group is due), flush due
        groups, commit, queue deliveries; returns how many notifications were made."""
        assert self._consumer is not None, "start() first"
        if not self.state.renew(self.owner, self.lease_ms):
            raise NotifierError("the notifier lost its lease; another one took over")
        wake = self.dispatcher.next_wakeup()
        wait = (
            max_wait_s
            if wake is None
            else max(0.0, min(max_wait_s, (wake - self._now_ms()) / 1000))
        )
        first = self._consumer.poll(wait)
        messages = [] if first is None else [first, *self._consumer.consume(1000, 0)]
        now = self._now_ms()
        for m in messages:
            if m.error():
                log.warning("notifier_read_error", error=str(m.error()))
                continue
            part, offset = m.partition(), m.offset()
            if part is None or offset is None:
                continue
            self.offsets[part] = self.dirty_offsets[part] = offset + 1
            try:
                t = AlertTransition.from_json(m.value() or b"")
            except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
                log.warning(
                    "notifier_bad_transition", partition=part, offset=offset, error=str(exc)
                )
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
        if groups or removed or seen or self.dirty_offsets or queued:
            try:
                self.state.commit(
                    self.owner,
                    groups,
                    removed,
                    seen,
                    self.dirty_offsets,
                    {k: i.note for k, i in queued.items()},
                )
            except LeaseLostError as exc:
                raise NotifierError(f"stopping: {exc}") from exc
            self.dirty_offsets = {}
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
        if self._consumer is not None:
            self._consumer.close()
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


def run_notifier(settings: Settings, stop: threading.Event | None = None) -> None:
    """Run the notifier for the spec in ``settings`` until ``stop`` is set (or forever).

    Raises :class:`NotifierError` when neither the spec nor the settings name a receiver.
    """
    spec = load_spec(settings.spec)
    notifications = notifications_for(spec, settings)
    if notifications is None:
        raise NotifierError(
            f"{settings.spec} has no notifications: section (and RIFFLE_ALERT_WEBHOOK_URL is unset)"
        )
    environ = dict(os.environ)
    if settings.alert_webhook_url:
        environ[LEGACY_SECRET_ENV] = settings.alert_webhook_secret.get_secret_value()
    notifier = Notifier(
        notifications,
        build_channels(notifications, environ),
        servers=settings.kafka_servers,
        redis_url=settings.redis_url,
        prefix=settings.redis_prefix,
        topic=settings.alerts_topic,
        topic_partitions=settings.topic_partitions,
        lease_s=settings.notify_lease_seconds,
        workers=settings.notify_workers,
        resend_s=settings.notify_resend_seconds,
    )
    if settings.notify_metrics_port:
        start_http_server(settings.notify_metrics_port, addr=settings.api_host)
    stop = stop or threading.Event()
    log.info("notifier_starting", lease_s=settings.notify_lease_seconds)
    if not notifier.start(wait_s=None, stop=stop):
        return
    try:
        notifier.run(stop)
    finally:
        notifier.close()
