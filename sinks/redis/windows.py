"""Recent windows in Redis: partial and final values of every series, for live reads.

Key layout (the only place it is defined; ``P`` is the configured prefix,
``T`` the tenant, ``M`` the metric, ``S`` the series id of
:func:`operators.records.series_id`):

``P:T:w:M:S``
    ZSET of the series' windows. Score: ``window_start`` (epoch ms); member:
    :func:`stored_json` of the window's current value, a JSON array of what
    varies between the windows of a series (:data:`STORED_FIELDS`; the
    tenant, metric and dimensions are in the key and the index). Exactly one
    member per score. Members written before this layout are JSON objects
    (:meth:`~operators.records.WindowResult.to_json`, every field): readers
    and the upsert script take both, so a deployment upgrades in place and
    the windows already stored keep being served until they age out.
``P:T:series:M``
    HASH ``series id -> dims JSON object``: every series of the metric seen
    within the retention, so readers enumerate and filter series without
    ``KEYS``/``SCAN``.
``P:T:updated:M``
    STRING: the newest ``window_end`` written for the metric; a cheap "has
    anything changed" probe for caches.
``P:T:written:M``
    STRING: Redis's clock (``TIME``, ``seconds.microseconds``) at the last
    write of any window of the metric, partial or final: what lets a cache
    notice that the open window's value moved (:mod:`api.cache`).
``P:T:live``
    STREAM of the tenant's changes (:mod:`sinks.redis.live`): one entry per
    window written, field ``w``: :func:`live_json` of the window (no sketch).
    Each write sets its expiry to the hot retention.

Writes are full-value upserts, never increments, so writing the same results
twice leaves the same state as writing them once, and a replay rewrites
rather than adds. A partial never replaces a final of the same window (a
replay's partials would otherwise hide the finished value until the replay
catches up); a final replaces anything, the last one written wins. A
retraction (a session window that merged into one starting earlier) deletes
its window unless that window is final. Revisions are not compared: they
restart with every run of the dataflow.

Retention: every write sets the TTL of the keys it touches to the hot
retention and trims windows that start more than that before the newest
window of the batch, so an idle series disappears whole and a live one keeps
a bounded tail. An index entry may outlive its windows until the index key
itself expires; readers skip series without windows in range.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import orjson
import redis
from redis.typing import EncodableT, FieldT

from riffle.operators.records import Dims, WindowResult
from riffle.sinks.errors import SinkError
from riffle.sinks.redis.live import LIVE_MAXLEN, WINDOW_FIELD, live_key

# KEYS[1] the series' ZSET, KEYS[2] the metric's "updated" key, KEYS[3] its "written" stamp.
# ARGV[1] TTL in ms, ARGV[2] trim bound (windows starting before it go), then
# one (window_start, kind, member, window_end) group per window; kind is 1 for a
# final, 0 for a partial, 2 for a retraction (delete the window unless final).
# A stored member is a JSON array (is_final its 8th element) or, written before that
# layout, a JSON object with an "is_final" field.
_UPSERT_LUA = """
local ttl = ARGV[1]
local newest_end = 0
for i = 3, #ARGV, 4 do
  local start = ARGV[i]
  local keep_final = false
  if ARGV[i + 1] ~= '1' then
    for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], start, start)) do
      local stored = cjson.decode(old)
      local final = stored['is_final']
      if final == nil then final = stored[8] end
      if final == true then keep_final = true end
    end
  end
  if not keep_final then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], start, start)
    if ARGV[i + 1] ~= '2' then redis.call('ZADD', KEYS[1], start, ARGV[i + 2]) end
  end
  local window_end = tonumber(ARGV[i + 3])
  if window_end > newest_end then newest_end = window_end end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if newest_end > current then
  redis.call('SET', KEYS[2], newest_end, 'PX', ttl)
else
  redis.call('PEXPIRE', KEYS[2], ttl)
end
local now = redis.call('TIME')
redis.call('SET', KEYS[3], now[1] .. '.' .. string.format('%06d', now[2]), 'PX', ttl)
return 0
"""
_UPSERT_SHA = hashlib.sha1(_UPSERT_LUA.encode(), usedforsecurity=False).hexdigest()


class RedisWindowStore:
    """Hot window store over one Redis client; safe to share between threads.

    ``hot_ttl_seconds`` bounds how long a series outlives its last write and
    how far back its windows reach behind its newest one.
    """

    def __init__(self, client: redis.Redis, prefix: str, hot_ttl_seconds: int) -> None:
        if hot_ttl_seconds <= 0:
            raise ValueError(f"hot_ttl_seconds must be positive (got {hot_ttl_seconds})")
        self._client = client
        self._prefix = prefix
        self._ttl_ms = hot_ttl_seconds * 1000

    @property
    def client(self) -> redis.Redis:
        """The Redis client (other hot stores, e.g. model results, share it)."""
        return self._client

    @property
    def prefix(self) -> str:
        """The configured key prefix."""
        return self._prefix

    def points_key(self, tenant: str, metric: str, series: str) -> str:
        """The ZSET holding one series' windows."""
        return f"{self._prefix}:{tenant}:w:{metric}:{series}"

    def index_key(self, tenant: str, metric: str) -> str:
        """The HASH of a metric's series ids and their dimensions."""
        return f"{self._prefix}:{tenant}:series:{metric}"

    def updated_key(self, tenant: str, metric: str) -> str:
        """The STRING holding the newest ``window_end`` written for a metric."""
        return f"{self._prefix}:{tenant}:updated:{metric}"

    def written_key(self, tenant: str, metric: str) -> str:
        """The STRING stamped with Redis's clock at every write of a metric's windows."""
        return f"{self._prefix}:{tenant}:written:{metric}"

    def live_key(self, tenant: str) -> str:
        """The STREAM of a tenant's changes (windows and alert transitions)."""
        return live_key(self._prefix, tenant)

    def write(self, results: Sequence[WindowResult]) -> None:
        """Upsert ``results`` in one pipelined round trip; idempotent, safe to retry.

        Within the batch, later results for the same window win (subject to the
        partial-never-replaces-final rule). Raises :class:`SinkError` when Redis
        cannot be reached; the batch may then be partly applied, and writing it
        again is the remedy.
        """
        if not results:
            return
        by_series: dict[tuple[str, str, str], list[WindowResult]] = defaultdict(list)
        index: dict[tuple[str, str], dict[FieldT, EncodableT]] = defaultdict(dict)
        for result in results:
            by_series[result.tenant, result.metric, result.series].append(result)
            index[result.tenant, result.metric][result.series] = orjson.dumps(dict(result.dims))
        try:
            try:
                self._write_once(by_series, index)
            except redis.exceptions.NoScriptError:
                # Redis restarted or its script cache was flushed: load and redo;
                # the batch is idempotent, so the part already applied is harmless.
                self._client.script_load(_UPSERT_LUA)
                self._write_once(by_series, index)
        except redis.RedisError as exc:
            raise SinkError(f"redis write of {len(results)} windows failed: {exc}") from exc

    def _write_once(
        self,
        by_series: Mapping[tuple[str, str, str], list[WindowResult]],
        index: Mapping[tuple[str, str], dict[FieldT, EncodableT]],
    ) -> None:
        pipe = self._client.pipeline(transaction=False)
        for (tenant, metric, series), windows in by_series.items():
            args: list[Any] = [self._ttl_ms, max(w.window_start for w in windows) - self._ttl_ms]
            for window in windows:
                args += [
                    window.window_start,
                    2 if window.retracted else int(window.is_final),
                    stored_json(window),
                    window.window_end,
                ]
            keys = [
                self.points_key(tenant, metric, series),
                self.updated_key(tenant, metric),
                self.written_key(tenant, metric),
            ]
            pipe.evalsha(_UPSERT_SHA, len(keys), *keys, *args)
            live = self.live_key(tenant)
            for window in windows:
                pipe.xadd(
                    live, {WINDOW_FIELD: live_json(window)}, maxlen=LIVE_MAXLEN, approximate=True
                )
        for tenant in {tenant for tenant, _, _ in by_series}:
            pipe.pexpire(self.live_key(tenant), self._ttl_ms)
        for (tenant, metric), entries in index.items():
            key = self.index_key(tenant, metric)
            pipe.hset(key, mapping=entries)
            pipe.pexpire(key, self._ttl_ms)
        pipe.execute()

    def list_series(self, tenant: str, metric: str) -> dict[str, Dims]:
        """Series id -> dimensions of every series of ``metric`` in the index."""
        try:
            raw: dict[bytes | str, bytes | str] = self._client.hgetall(
                self.index_key(tenant, metric)
            )
        except redis.RedisError as exc:
            raise SinkError(f"redis read of the series index failed: {exc}") from exc
        return {_text(series): _dims(value) for series, value in raw.items()}

    def list_series_many(self, tenant: str, metrics: Sequence[str]) -> dict[str, dict[str, Dims]]:
        """:meth:`list_series` of several metrics in one pipelined round trip."""
        if not metrics:
            return {}
        pipe = self._client.pipeline(transaction=False)
        for metric in metrics:
            pipe.hgetall(self.index_key(tenant, metric))
        try:
            replies: list[dict[bytes | str, bytes | str]] = pipe.execute()
        except redis.RedisError as exc:
            raise SinkError(f"redis read of the series indexes failed: {exc}") from exc
        return {
            metric: {_text(series): _dims(value) for series, value in raw.items()}
            for metric, raw in zip(metrics, replies, strict=True)
        }

    def read_series(
        self,
        tenant: str,
        metric: str,
        start_ms: int,
        end_ms: int,
        filters: Mapping[str, Collection[str]] | None = None,
    ) -> list[tuple[Dims, list[WindowResult]]]:
        """Windows starting in ``[start_ms, end_ms)`` of every series matching ``filters``.

        ``filters`` maps a dimension to the values it may take (OR within a
        dimension, AND across dimensions). Series come sorted by dimensions,
        windows by start; series without a window in range are left out. Two
        round trips: the index, then one pipeline over the matching series.
        """
        return [
            (dims, [_window(tenant, metric, dims, data) for data in stored])
            for dims, stored in self.read_stored(tenant, metric, start_ms, end_ms, filters)
        ]

    def read_stored(
        self,
        tenant: str,
        metric: str,
        start_ms: int,
        end_ms: int,
        filters: Mapping[str, Collection[str]] | None = None,
    ) -> list[tuple[Dims, list[list[Any]]]]:
        """:meth:`read_series` with each window as its stored row: a list of
        :data:`STORED_FIELDS` by position (index with :data:`START`, :data:`COUNT`, …),
        at least :data:`SHORT` long (the fields after are ``False``/``None`` when
        absent), the sketch in base64.

        For readers that fold many windows (rollups): a series' members are
        decoded in one call and no :class:`WindowResult` is built. Members of the
        older layout (JSON objects) come as rows too.
        """
        chosen = sorted(
            (dims, series)
            for series, dims in self.list_series(tenant, metric).items()
            if _matches(dims, filters)
        )
        if not chosen:
            return []
        pipe = self._client.pipeline(transaction=False)
        for _, series in chosen:
            pipe.zrangebyscore(self.points_key(tenant, metric, series), start_ms, f"({end_ms}")
        try:
            replies: list[list[bytes]] = pipe.execute()
        except redis.RedisError as exc:
            raise SinkError(f"redis read of {metric} windows failed: {exc}") from exc
        return [
            (dims, _rows(orjson.loads(b"[" + b",".join(members) + b"]")))
            for (dims, _), members in zip(chosen, replies, strict=True)
            if members
        ]

    def ping(self) -> None:
        """Return if Redis answers; raise :class:`SinkError` saying why not otherwise."""
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise SinkError(f"redis unreachable: {exc}") from exc


def live_json(window: WindowResult) -> bytes:
    """A window as a live-stream entry: JSON of its fields, dimensions as an object,
    without the sketch (its value and ``detail`` already say what it holds)."""
    return orjson.dumps(
        {
            "metric": window.metric,
            "dims": dict(window.dims),
            "window_start": window.window_start,
            "window_end": window.window_end,
            "count": window.count,
            "sum": window.sum,
            "min": window.min,
            "max": window.max,
            "value": window.value,
            "is_final": window.is_final,
            "revision": window.revision,
            "retracted": window.retracted,
            "detail": window.detail,
        }
    )


STORED_FIELDS = (
    "window_start",
    "window_end",
    "count",
    "sum",
    "min",
    "max",
    "value",
    "is_final",
    "revision",
    "emitted_at",
    "retracted",
    "sketch",
    "detail",
)
"""A stored member's fields, by position."""
START, END, COUNT, SUM, MIN, MAX, VALUE, FINAL, REVISION, EMITTED, RETRACTED, SKETCH, DETAIL = (
    range(len(STORED_FIELDS))
)
SHORT = RETRACTED
"""A member without a retraction, sketch or detail stops before :data:`RETRACTED`."""


def stored_json(window: WindowResult) -> bytes:
    """A window as its series' ZSET member: a JSON array of :data:`STORED_FIELDS`, cut
    after ``emitted_at`` when it is not retracted and has no sketch or detail (about a
    quarter of the bytes of :meth:`~operators.records.WindowResult.to_json`)."""
    row: list[Any] = [
        window.window_start,
        window.window_end,
        window.count,
        window.sum,
        window.min,
        window.max,
        window.value,
        window.is_final,
        window.revision,
        window.emitted_at,
    ]
    sketch = window.sketch
    if window.retracted or sketch is not None or window.detail is not None:
        row += [
            window.retracted,
            None if sketch is None else base64.b64encode(sketch).decode("ascii"),
            window.detail,
        ]
    return orjson.dumps(row)


def _rows(decoded: list[Any]) -> list[list[Any]]:
    """Decoded members as rows; an object of the older layout becomes its full row."""
    for i, member in enumerate(decoded):
        if type(member) is dict:
            decoded[i] = [
                member.get(name, False if name == "retracted" else None) for name in STORED_FIELDS
            ]
            if decoded[i][EMITTED] is None:
                decoded[i][EMITTED] = 0
    return decoded


def _window(tenant: str, metric: str, dims: Dims, row: list[Any]) -> WindowResult:
    """A stored row as a :class:`WindowResult` of a known series (what
    :meth:`WindowResult.from_json` gives, without rebuilding the dimensions per window)."""
    long = len(row) > SHORT
    sketch = row[SKETCH] if long else None
    return WindowResult(
        tenant=tenant,
        metric=metric,
        dims=dims,
        window_start=row[START],
        window_end=row[END],
        count=row[COUNT],
        sum=row[SUM],
        min=row[MIN],
        max=row[MAX],
        value=row[VALUE],
        is_final=row[FINAL],
        revision=row[REVISION],
        emitted_at=row[EMITTED],
        retracted=row[RETRACTED] if long else False,
        sketch=None if sketch is None else base64.b64decode(sketch),
        detail=row[DETAIL] if long else None,
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _dims(raw: bytes | str) -> Dims:
    return tuple(sorted(orjson.loads(raw).items()))


def _matches(dims: Dims, filters: Mapping[str, Collection[str]] | None) -> bool:
    if not filters:
        return True
    values = dict(dims)
    return all(values.get(name) in allowed for name, allowed in filters.items())
