"""Query results cached in Redis, keyed by the normalised query, invalidated by new windows.

Key ``P:T:qcache:M:<sha1 of the normalised query>`` holds
``{"v": <updated>, "w": <written or null>, "body": <response JSON>}`` with a
TTL. Two stamps of the hot store (:mod:`sinks.redis.windows`) decide whether an
entry is current, read in the same ``MGET`` as the entry:

* ``P:T:updated:M``, the newest ``window_end`` written for the metric: when it
  moved, a newer window landed, and every entry of the metric is stale;
* ``P:T:written:M``, Redis's clock at the last write of any of the metric's
  windows (partial or final): an entry computed over the *live* part of the
  metric records it, and is stale once it moves — so a query that covers the
  open window never serves a value older than the last partial write (nor
  the partial after the final replaced it).

An entry is live when its range reaches the windows that can still change
(see :meth:`QueryCache.put`). Older ranges ignore ``written``; the TTL bounds
how stale they can be (a correction of an old window does not move
``updated``).

The tenant is part of the key, so tenants never share entries.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from prometheus_client import CollectorRegistry, Counter

from riffle.sinks.errors import SinkError


@dataclass(frozen=True, slots=True)
class CacheVersion:
    """The hot store's stamps of a metric when a result was (or is about to be) computed."""

    updated: str
    """Newest ``window_end`` written (epoch ms as text; ``""`` before any write)."""
    written: str
    """Redis clock at the last write of the metric (``""`` before any write)."""

    @property
    def newest_end_ms(self) -> int | None:
        """``updated`` as epoch ms, ``None`` before any write."""
        return int(float(self.updated)) if self.updated else None


class QueryCache:
    """Cache over one Redis client; ``ttl_seconds`` of 0 turns it off."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        ttl_seconds: float,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_ms = int(ttl_seconds * 1000)
        self._lookups = Counter(
            "riffle_api_query_cache",
            "Query cache lookups by result (hit, miss, stale).",
            ["result"],
            registry=registry if registry is not None else CollectorRegistry(),
        )

    @property
    def enabled(self) -> bool:
        """False when the TTL is 0."""
        return self._ttl_ms > 0

    def key(self, tenant: str, metric: str, query: dict[str, Any]) -> str:
        """The entry's key: tenant, metric and a digest of the normalised query."""
        digest = hashlib.sha1(
            orjson.dumps(query, option=orjson.OPT_SORT_KEYS), usedforsecurity=False
        ).hexdigest()
        return f"{self._prefix}:{tenant}:qcache:{metric}:{digest}"

    def version_key(self, tenant: str, metric: str) -> str:
        """The hot store's ``updated`` key of the metric."""
        return f"{self._prefix}:{tenant}:updated:{metric}"

    def written_key(self, tenant: str, metric: str) -> str:
        """The hot store's ``written`` stamp of the metric."""
        return f"{self._prefix}:{tenant}:written:{metric}"

    def get(
        self, tenant: str, metric: str, query: dict[str, Any]
    ) -> tuple[bytes | None, CacheVersion]:
        """``(body, version)``: the cached body if current (else ``None``) and the stamps now."""
        if not self.enabled:
            return None, CacheVersion("", "")
        try:
            entry, updated, written = self._client.mget(
                [
                    self.key(tenant, metric, query),
                    self.version_key(tenant, metric),
                    self.written_key(tenant, metric),
                ]
            )
        except redis.RedisError as exc:
            raise SinkError(f"redis read of the query cache failed: {exc}") from exc
        current = CacheVersion(_text(updated), _text(written))
        if entry is None:
            self._lookups.labels("miss").inc()
            return None, current
        stored = orjson.loads(entry)
        live = stored.get("w")
        if stored["v"] != current.updated or (live is not None and live != current.written):
            self._lookups.labels("stale").inc()
            return None, current
        self._lookups.labels("hit").inc()
        return str(stored["body"]).encode(), current

    def put(
        self,
        tenant: str,
        metric: str,
        query: dict[str, Any],
        version: CacheVersion,
        body: bytes,
        *,
        live: bool,
    ) -> None:
        """Store ``body`` computed at ``version``.

        ``live``: the result covers windows that may still change (the open
        window; the caller decides, see :func:`api.routes.query.covers_live`),
        so any later write of the metric makes it stale.
        """
        if not self.enabled:
            return
        entry = orjson.dumps(
            {"v": version.updated, "w": version.written if live else None, "body": body.decode()}
        )
        try:
            self._client.set(self.key(tenant, metric, query), entry, px=self._ttl_ms)
        except redis.RedisError as exc:
            raise SinkError(f"redis write of the query cache failed: {exc}") from exc


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)
