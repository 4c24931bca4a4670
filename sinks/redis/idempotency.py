"""The answers of ``POST /v1/events`` kept per tenant and ``Idempotency-Key``.

``{prefix}:idem:{tenant}:{sha256 of the key}`` holds the answer so far (JSON:
the body's fingerprint and the per-event results) for ``ttl_s``; the request
working on it holds a :class:`~sinks.redis.lease.Lease` at the same key plus
``:lock`` (``SET NX``), so concurrent retries of one request never publish
twice: the second finds the lease taken. The key is hashed so any client
string makes a bounded Redis key.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from riffle.sinks.redis.lease import Lease


@dataclass(frozen=True)
class IdempotentAnswer:
    """What a request with a key answered so far."""

    fingerprint: str
    """Digest of the body (and how it was sent): a key is for one body only."""
    results: list[dict[str, Any]]
    """Per-event results in body order, as answered (``status`` ``failed`` ones may be
    retried; every other one is final)."""


class IdempotencyStore:
    """Answers and in-flight claims of ingest requests by ``(tenant, key)``."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int, claim_s: float) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.claim_ms = int(claim_s * 1000)

    def _key(self, tenant: str, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{self.prefix}:idem:{tenant}:{digest}"

    def claim(self, tenant: str, key: str) -> str | None:
        """Claim the key for one request; its token, or ``None`` while another holds it.

        The claim lapses after ``claim_s`` (a request that died holding it)."""
        token = uuid.uuid4().hex
        lease = Lease(self.client, self._key(tenant, key) + ":lock")
        return token if lease.acquire(token, self.claim_ms) else None

    def release(self, tenant: str, key: str, token: str) -> None:
        """Give the claim up (only if ``token`` still holds it)."""
        Lease(self.client, self._key(tenant, key) + ":lock").release(token)

    def get(self, tenant: str, key: str) -> IdempotentAnswer | None:
        """The answer so far, or ``None`` (never answered, or expired)."""
        raw = self.client.get(self._key(tenant, key))
        if raw is None:
            return None
        data = orjson.loads(raw)
        return IdempotentAnswer(data["fingerprint"], data["results"])

    def put(self, tenant: str, key: str, answer: IdempotentAnswer) -> None:
        """Keep ``answer`` for ``ttl_s`` from now."""
        value = orjson.dumps({"fingerprint": answer.fingerprint, "results": answer.results})
        self.client.set(self._key(tenant, key), value, ex=self.ttl_s)
