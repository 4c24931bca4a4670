"""Share links of dashboards: which exist, until when, for what time range.

A share is the HASH ``P:T:share:<id>`` (``dashboard``, ``start``, ``end``,
``expires_at``, ``created_by``, ``created_at``) that expires with the link,
and a member of the SET ``P:T:shares:<dashboard>`` (the dashboard's links,
for listing). Revoking deletes the hash: the signed token naming it stops
working at once (:mod:`api.share` checks the hash on every request).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from riffle.sinks.errors import SinkError


@dataclass(frozen=True, slots=True)
class Share:
    """One share link's record."""

    id: str
    tenant: str
    dashboard: str
    start: str
    end: str
    expires_at: int
    created_by: str
    created_at: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


class ShareStore:
    """Share records in Redis under ``prefix``."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def _key(self, tenant: str, share_id: str) -> str:
        return f"{self._prefix}:{tenant}:share:{share_id}"

    def _index(self, tenant: str, dashboard: str) -> str:
        return f"{self._prefix}:{tenant}:shares:{dashboard}"

    def create(
        self, tenant: str, dashboard: str, start: str, end: str, ttl_s: int, created_by: str
    ) -> Share:
        """A new share valid for ``ttl_s`` seconds from now."""
        now = int(time.time() * 1000)
        share = Share(
            secrets.token_hex(8), tenant, dashboard, start, end, now + ttl_s * 1000, created_by, now
        )
        fields = {k: str(v) for k, v in share.as_dict().items()}
        try:
            pipe = self._client.pipeline()
            pipe.hset(self._key(tenant, share.id), mapping=fields)  # type: ignore[arg-type]
            pipe.pexpireat(self._key(tenant, share.id), share.expires_at)
            pipe.sadd(self._index(tenant, dashboard), share.id)
            pipe.execute()
        except redis.RedisError as exc:
            raise SinkError(f"redis write of a share failed: {exc}") from exc
        return share

    def get(self, tenant: str, share_id: str) -> Share | None:
        """The share, or ``None`` once revoked or expired."""
        try:
            raw: dict[bytes, bytes] = self._client.hgetall(self._key(tenant, share_id))  # type: ignore[assignment]
        except redis.RedisError as exc:
            raise SinkError(f"redis read of a share failed: {exc}") from exc
        if not raw:
            return None
        f = {k.decode(): v.decode() for k, v in raw.items()}
        if int(f["expires_at"]) <= int(time.time() * 1000):
            return None
        return Share(
            f["id"], f["tenant"], f["dashboard"], f["start"], f["end"],
            int(f["expires_at"]), f["created_by"], int(f["created_at"]),
        )  # fmt: skip

    def list(self, tenant: str, dashboard: str) -> list[Share]:
        """The dashboard's live shares, newest first (expired ones leave the index)."""
        index = self._index(tenant, dashboard)
        ids = sorted(m.decode() for m in self._client.smembers(index))  # type: ignore[union-attr]
        found = []
        for share_id in ids:
            share = self.get(tenant, share_id)
            if share is None:
                self._client.srem(index, share_id)
            else:
                found.append(share)
        return sorted(found, key=lambda s: -s.created_at)

    def revoke(self, tenant: str, dashboard: str, share_id: str) -> bool:
        """Delete the share; whether it existed."""
        share = self.get(tenant, share_id)
        if share is None or share.dashboard != dashboard:
            return False
        self._client.delete(self._key(tenant, share_id))
        self._client.srem(self._index(tenant, dashboard), share_id)
        return True
