"""Query results cached in Redis, keyed by the normalised query, invalidated by new windows.

Key ``P:T:qcache:M:<sha1 of the normalised query>`` holds
``{"v": <version>, "body": <response JSON>}`` with a TTL. The version is the
metric's ``P:T:updated:M`` (the newest ``window_end`` the hot store wrote,
see :mod:`sinks.redis_store`) at the time the result was computed: one
``MGET`` reads the entry and the current version together, and an entry
whose version is behind is a miss — a newer window of that metric landed.
Partial updates of the newest open window do not move the version; the TTL
bounds how stale such a value can be.

The tenant is part of the key, so tenants never share entries.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import redis
from prometheus_client import CollectorRegistry, Counter

from sinks.errors import SinkError


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

    def get(self, tenant: str, metric: str, query: dict[str, Any]) -> tuple[bytes | None, str]:
        """``(body, version)``: the cached body if current (else ``None``) and the version."""
        if not self.enabled:
            return None, ""
        try:
            entry, version = self._client.mget(
                [self.key(tenant, metric, query), self.version_key(tenant, metric)]
            )
        except redis.RedisError as exc:
            raise SinkError(f"redis read of the query cache failed: {exc}") from exc
        current = version.decode() if isinstance(version, bytes) else str(version or "")
        if entry is None:
            self._lookups.labels("miss").inc()
            return None, current
        stored = orjson.loads(entry)
        if stored["v"] != current:
            self._lookups.labels("stale").inc()
            return None, current
        self._lookups.labels("hit").inc()
        return str(stored["body"]).encode(), current

    def put(
        self, tenant: str, metric: str, query: dict[str, Any], version: str, body: bytes
    ) -> None:
        """Store ``body`` computed at ``version``."""
        if not self.enabled:
            return
        entry = orjson.dumps({"v": version, "body": body.decode()})
        try:
            self._client.set(self.key(tenant, metric, query), entry, px=self._ttl_ms)
        except redis.RedisError as exc:
            raise SinkError(f"redis write of the query cache failed: {exc}") from exc
