"""Live changes: one Redis reader per process, fanned out to subscribers.

The dataflow's writers append every changed window, and every new alert
transition, to their tenant's live stream (:mod:`sinks.redis.live`). A
:class:`LiveHub` reads those streams with one ``XREAD BLOCK`` loop per
process and hands each subscriber what its subscriptions follow (one or
several, multiplexed, so a page needs one connection): a :class:`Subscription`
follows a metric's windows, per series as written, or, with ``group_by``,
each changed group's window recomputed from Redis exactly as
``/series?group_by=`` would (once per batch for every subscriber of the same
subscription); an :class:`AlertSubscription` follows alert transitions.

Subscribers iterate :meth:`LiveHub.subscribe`, an async iterator of
:class:`LiveBatch`; it is independent of any wire format (SSE in
:mod:`api.routes.stream`, GraphQL subscriptions in
:mod:`api.graphql.subscriptions`). Each subscriber has a bounded buffer keyed
by (group, window start), or by transition id: a slow reader gets the latest
value of every window it has not read yet, coalesced, and every transition,
never an unbounded queue; past ``buffer_limit`` pending items the buffer is
dropped and the next batch is a ``reset`` (re-read the range, then carry on).

Resuming: every batch carries ``last_id``, the newest stream entry it
reflects; a subscription started with that id as ``last_id`` sees every
window changed and every transition made after it, exactly (from the stream,
while it still holds the id; otherwise the first batch is a ``reset``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from riffle.api.series import group_series
from riffle.config.spec import PipelineSpec
from riffle.operators.records import Dims
from riffle.operators.sketches import sketch_for
from riffle.sinks.redis.live import ALERT_FIELD, WINDOW_FIELD
from riffle.sinks.redis.windows import RedisWindowStore

log = structlog.get_logger(__name__)

CATCH_UP_LIMIT = 20_000
"""Most stream entries one resume replays; further behind, the subscriber is reset."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a subscriber follows: one metric of one tenant, per series or grouped.

    ``group_by`` ``None`` streams every series' windows; a tuple (possibly
    empty: everything merged) streams groups. ``filters`` maps a dimension
    to the values it may take, as in ``/series``.
    """

    tenant: str
    metric: str
    group_by: tuple[str, ...] | None = None
    filters: tuple[tuple[str, frozenset[str]], ...] = ()

    def admits(self, dims: Mapping[str, str]) -> bool:
        """Whether a series with ``dims`` passes the filters."""
        return all(dims.get(name) in allowed for name, allowed in self.filters)

    def group_of(self, dims: Mapping[str, str]) -> Dims:
        """The key a series' window is coalesced under: its dims, or its group's."""
        if self.group_by is None:
            return tuple(sorted(dims.items()))
        return tuple(sorted((name, dims.get(name, "")) for name in self.group_by))


@dataclass(frozen=True, slots=True)
class AlertSubscription:
    """What an alerts subscriber follows: the transitions of one tenant's alert instances.

    Each of ``metrics``, ``rules`` and ``severities`` keeps the transitions
    whose field takes one of its values; empty keeps all.
    """

    tenant: str
    metrics: frozenset[str] = frozenset()
    rules: frozenset[str] = frozenset()
    severities: frozenset[str] = frozenset()

    def admits(self, transition: Mapping[str, Any]) -> bool:
        """Whether ``transition`` (an alert-stream entry) passes the filters."""
        return (
            (not self.metrics or transition["metric"] in self.metrics)
            and (not self.rules or transition["rule"] in self.rules)
            and (not self.severities or transition["severity"] in self.severities)
        )


Follow = Subscription | AlertSubscription
"""One thing a subscriber follows: a metric's windows or alert transitions."""
Change = tuple[str, dict[str, Any]]
"""A stream entry's kind (its field, :mod:`sinks.redis.live`) and what it holds."""


@dataclass(frozen=True, slots=True)
class LiveBatch:
    """Windows that changed, each its latest value, transitions made since the last
    batch, and the stream id they reflect.

    ``reset`` asks the subscriber to re-read its range (the buffer overflowed,
    or a resume reached back past what the stream keeps); ``windows`` and
    ``alerts`` are then empty and ``last_id`` is where the stream continues
    from. Each window and transition has ``sub``, the index of the
    subscription it answers; a transition is :meth:`AlertTransition.to_json
    <operators.alerts.AlertTransition.to_json>` without its tenant.
    """

    last_id: str
    windows: list[dict[str, Any]]
    reset: bool = False
    alerts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(eq=False)
class _Subscriber:
    subs: tuple[Follow, ...]
    limit: int
    buffered: Gauge
    pending: dict[tuple[int, Dims, int], dict[str, Any]] = field(default_factory=dict)
    transitions: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    last_id: str = "0-0"
    reset: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(
        self, index: int, items: list[dict[str, Any]], last_id: str, *, newer: bool = True
    ) -> int:
        """Merge ``items`` (windows, or transitions, as subscription ``index`` follows) into
        the buffer; returns how many pending items were dropped (an overflow)."""
        dropped = 0
        before = self.size
        sub = self.subs[index] if self.subs else None
        for item in items:
            if isinstance(sub, AlertSubscription):
                self.transitions[index, item["transition_id"]] = {**item, "sub": index}
                continue
            assert sub is not None
            key = (index, sub.group_of(item["dims"]), item["window_start"])
            if newer or key not in self.pending:
                old = self.pending.get(key)
                if old is None or item["is_final"] or not old["is_final"]:
                    self.pending[key] = {**item, "sub": index}
        if self.size > self.limit:
            dropped = self.size
            self.pending.clear()
            self.transitions.clear()
            self.reset = True
        self.buffered.inc(self.size - before)
        self.last_id = max(self.last_id, last_id, key=_id_key)
        self.wake.set()
        return dropped

    @property
    def size(self) -> int:
        """Windows and transitions waiting to be taken."""
        return len(self.pending) + len(self.transitions)

    def take(self) -> LiveBatch:
        batch = LiveBatch(
            self.last_id,
            list(self.pending.values()),
            self.reset,
            list(self.transitions.values()),
        )
        self.buffered.dec(self.size)
        self.pending = {}
        self.transitions = {}
        self.reset = False
        self.wake.clear()
        return batch


class LiveHub:
    """One reader of the live streams for a process; subscribers share it.

    ``block_ms`` is how long one ``XREAD`` waits (also how soon a new
    tenant's stream joins the read); ``buffer_limit`` bounds each
    subscriber's pending windows and transitions. Metrics go to ``registry``.
    """

    def __init__(
        self,
        redis_url: str,
        hot: RedisWindowStore,
        spec: PipelineSpec,
        registry: CollectorRegistry,
        *,
        block_ms: int = 1000,
        buffer_limit: int = 5000,
    ) -> None:
        self._url = redis_url
        self._hot = hot
        self._spec = spec
        self._block_ms = block_ms
        self._limit = buffer_limit
        self._positions: dict[str, str] = {}
        self._subscribers: dict[str, set[_Subscriber]] = {}
        self._client: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._connections = Gauge(
            "riffle_api_stream_connections",
            "Live-stream subscribers connected now.",
            registry=registry,
        )
        self._events = Counter(
            "riffle_api_stream_windows",
            "Window updates handed to live-stream subscribers.",
            registry=registry,
        )
        self._resets = Counter(
            "riffle_api_stream_resets",
            "Live-stream batches that asked the subscriber to re-read (overflow, lost resume).",
            registry=registry,
        )
        self._transitions = Counter(
            "riffle_api_stream_alerts",
            "Alert transitions handed to live-stream subscribers.",
            registry=registry,
        )
        self._buffered = Gauge(
            "riffle_api_stream_buffered",
            "Windows and transitions waiting in live-stream subscribers' buffers, all together.",
            registry=registry,
        )

    async def close(self) -> None:
        """Stop the reader and close its connection; subscribers end."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def subscribe(
        self,
        subs: Sequence[Follow],
        last_id: str | None = None,
        *,
        heartbeat_s: float = 15.0,
    ) -> AsyncIterator[LiveBatch]:
        """Batches of the changed windows and new transitions ``subs`` (all of one tenant)
        follow, from ``last_id`` (default: from now). Each window and transition has
        ``sub``, the index of its subscription.

        The first batch comes at once: the catch-up since ``last_id`` (maybe
        empty), or a ``reset``. Then one batch whenever the tenant's stream
        moved (possibly empty: nothing of ``subs`` changed), and an empty one
        after ``heartbeat_s`` without changes (a keep-alive). The iterator runs
        until the caller stops iterating it.
        """
        client = self._connect()
        tenants = {sub.tenant for sub in subs}
        if len(tenants) != 1:
            raise ValueError(f"one tenant per subscriber (got {sorted(tenants)})")
        (tenant,) = tenants
        key = self._hot.live_key(tenant)
        subscriber = _Subscriber(tuple(subs), self._limit, self._buffered)
        tenant_subs = self._subscribers.setdefault(tenant, set())
        if tenant not in self._positions:
            self._positions[tenant] = await _newest_id(client, key)
        position = self._positions[tenant]
        subscriber.last_id = position
        tenant_subs.add(subscriber)
        self._connections.inc()
        self._ensure_reader()
        try:
            if last_id is not None:
                await self._catch_up(client, key, subscriber, last_id, position)
            else:
                subscriber.wake.set()
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(subscriber.wake.wait(), heartbeat_s)
                batch = subscriber.take()
                if batch.reset:
                    self._resets.inc()
                self._events.inc(len(batch.windows))
                self._transitions.inc(len(batch.alerts))
                yield batch
        finally:
            self._buffered.dec(subscriber.size)
            tenant_subs.discard(subscriber)
            if not tenant_subs:
                self._subscribers.pop(tenant, None)
                self._positions.pop(tenant, None)
            self._connections.dec()

    def _connect(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(self._url, socket_connect_timeout=2.0)
        return self._client

    def _ensure_reader(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._read_forever())
        self._wake.set()

    async def _catch_up(
        self,
        client: aioredis.Redis,
        key: str,
        subscriber: _Subscriber,
        last_id: str,
        position: str,
    ) -> None:
        if _id_key(last_id) > _id_key(position):
            subscriber.offer(0, [], position)
            return
        if await _lost_after(client, key, last_id):
            subscriber.reset = True
            subscriber.offer(0, [], position)
            return
        entries = _entries(
            await client.xrange(key, f"({last_id}", position, count=CATCH_UP_LIMIT + 1)
        )
        if len(entries) > CATCH_UP_LIMIT:
            subscriber.reset = True
            subscriber.offer(0, [], position)
            return
        for index, sub in enumerate(subscriber.subs):
            updates = await self._updates(sub, [(kind, item) for _, kind, item in entries])
            subscriber.offer(index, updates, position, newer=False)

    async def _read_forever(self) -> None:
        client = self._connect()
        while True:
            if not self._subscribers:
                self._wake.clear()
                await self._wake.wait()
                continue
            streams: dict[Any, Any] = {
                self._hot.live_key(t): self._positions[t] for t in list(self._subscribers)
            }
            try:
                replies: Any = await client.xread(streams, block=self._block_ms, count=5000)
            except redis.RedisError as exc:
                log.warning("live_read_failed", error=str(exc))
                await asyncio.sleep(1.0)
                continue
            for stream, raw in replies or []:
                tenant = _text(stream)[len(self._hot.prefix) + 1 : -len(":live")]
                entries = _entries(raw)
                if tenant not in self._positions or not entries:
                    continue
                newest = entries[-1][0]
                self._positions[tenant] = newest
                await self._deliver(tenant, [(kind, item) for _, kind, item in entries], newest)

    async def _deliver(self, tenant: str, changes: list[Change], newest: str) -> None:
        by_sub: dict[Follow, list[tuple[_Subscriber, int]]] = {}
        for subscriber in self._subscribers.get(tenant, ()):
            for index, sub in enumerate(subscriber.subs):
                by_sub.setdefault(sub, []).append((subscriber, index))
        for sub, subscribers in by_sub.items():
            try:
                updates = await self._updates(sub, changes)
            except redis.RedisError as exc:
                log.warning("live_group_read_failed", error=str(exc), subscription=repr(sub))
                updates = []
                for subscriber, _ in subscribers:
                    subscriber.reset = True
            for subscriber, index in subscribers:
                subscriber.offer(index, updates, newest)

    async def _updates(self, sub: Follow, changes: list[Change]) -> list[dict[str, Any]]:
        """What ``sub`` sees of these changes: its transitions, or its windows (grouped
        ones recomputed)."""
        if isinstance(sub, AlertSubscription):
            return [item for kind, item in changes if kind == ALERT_FIELD and sub.admits(item)]
        mine = [
            item
            for kind, item in changes
            if kind == WINDOW_FIELD and item["metric"] == sub.metric and sub.admits(item["dims"])
        ]
        if sub.group_by is None or not mine:
            return mine
        return await asyncio.to_thread(self._groups, sub, mine)

    def _groups(self, sub: Subscription, changed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        metric = self._spec.metric(sub.metric)
        if metric is None:
            return []
        assert sub.group_by is not None
        wanted = {(sub.group_of(w["dims"]), w["window_start"]) for w in changed}
        starts = [start for _, start in wanted]
        series = self._hot.read_series(
            sub.tenant,
            sub.metric,
            min(starts),
            max(starts) + 1,
            {name: allowed for name, allowed in sub.filters} or None,
        )
        groups = group_series(series, sub.group_by, metric.aggregation, sketch_for(metric))
        return [
            {
                "metric": sub.metric,
                "dims": dict(dims),
                "window_start": window.window_start,
                "window_end": window.window_end,
                "count": window.count,
                "sum": window.sum,
                "min": window.min,
                "max": window.max,
                "value": window.value,
                "is_final": window.is_final,
                "revision": window.revision,
                "retracted": False,
                "detail": window.detail,
            }
            for dims, merged in groups
            for window in merged
            if (dims, window.window_start) in wanted
        ]


async def _newest_id(client: aioredis.Redis, key: str) -> str:
    newest = _entries(await client.xrevrange(key, "+", "-", count=1))
    return newest[0][0] if newest else "0-0"


def _entries(raw: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """Stream entries as ``(id, kind, change)``: ``kind`` the entry's field (a window or
    an alert transition, :mod:`sinks.redis.live`); a transition loses its tenant."""
    out = []
    for entry_id, fields in raw or ():
        for name, value in fields.items():
            kind = _text(name)
            change = orjson.loads(value)
            if kind == ALERT_FIELD:
                change.pop("tenant", None)
            out.append((_text(entry_id), kind, change))
    return out


async def _lost_after(client: aioredis.Redis, key: str, last_id: str) -> bool:
    """Whether entries after ``last_id`` may have been trimmed off (or the stream expired).

    Conservative: a resume from before the oldest kept entry of a trimmed
    stream counts as lost (a needless reset costs a re-read, a missed window
    a wrong chart).
    """
    try:
        info = await client.xinfo_stream(key)
    except redis.ResponseError:
        return last_id != "0-0"
    if int(info["entries-added"]) <= int(info["length"]):
        return False
    first = info.get("first-entry")
    oldest = _text(first[0]) if first else _text(info["last-generated-id"])
    return _id_key(last_id) < _id_key(oldest)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def valid_id(entry_id: str) -> bool:
    """Whether ``entry_id`` has a stream id's shape (``<ms>-<seq>`` or ``<ms>``)."""
    ms, _, seq = entry_id.partition("-")
    return ms.isdigit() and (seq == "" or seq.isdigit()) and len(entry_id) <= 41
