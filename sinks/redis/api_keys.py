"""API keys in Redis: stored as HMAC-SHA256 hashes, found by a non-secret prefix.

A key reads ``rfl_<prefix>_<secret>``: ``prefix`` (12 hex digits) names the
record, ``secret`` (43 URL-safe characters, 256 bits) is never stored. A
record is the hash ``<redis prefix>:apikey:<prefix>`` with fields ``hash``,
``tenant``, ``scopes`` (comma separated), ``name``, ``created_at``,
``expires_at`` and ``revoked_at`` (epoch ms, empty when unset); the set
``<redis prefix>:apikeys`` lists every prefix.

Why Redis: every request already talks to Redis for its rate limits, so a key
check rides on a round trip that is made anyway, and revocation takes effect on
the next request in every API process. A process keeps the keys it verified
(:meth:`KeyStore.cached`, by prefix, with the HMAC of the key); the script that
takes a request's rate limits first compares the stored record with the copy's
:func:`fingerprint` and takes nothing when it differs, so the caller reads the
record again (:func:`api.auth.charge`): a revoked, expired early or deleted key
is refused on its very next request, in one round trip instead of two. Why a fast
hash and not bcrypt/argon2: the secret is 256 random bits, so brute force is
hopeless whatever the hash; a slow hash would add tens of milliseconds to
every request. The HMAC pepper (``RIFFLE_API_KEY_PEPPER``) means a leaked
Redis dump alone cannot even confirm a guessed key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import redis
from redis.typing import EncodableT, FieldT

from riffle.sinks.errors import SinkError

KEY_FIELDS = ("hash", "tenant", "scopes", "name", "created_at", "expires_at", "revoked_at")
"""A key record's fields, in the order :func:`fingerprint` joins them."""
CACHE_SIZE = 10_000
"""Verified keys kept per process (the cache starts over when it is full)."""

Scope = Literal["ingest", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest", "read", "admin")
KEY_MARK = "rfl"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without its secret."""

    prefix: str
    tenant: str
    scopes: tuple[str, ...]
    name: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None

    def state(self, now_ms: int) -> Literal["active", "revoked", "expired"]:
        """Whether the key may be used at ``now_ms``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now_ms >= self.expires_at:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class Verified:
    """A key checked against its stored record, and what that record read then."""

    record: ApiKey
    record_key: str
    """The Redis hash holding the record."""
    fingerprint: str
    """:func:`fingerprint` of the record as read: a check in Redis that it is unchanged
    (:meth:`api.ratelimit.RateLimiter.take_guarded`) stands for reading it again."""


def fingerprint(fields: dict[bytes, bytes]) -> str:
    """The record's :data:`KEY_FIELDS` joined by newlines (a missing field is empty)."""
    return "\n".join(fields.get(name.encode(), b"").decode() for name in KEY_FIELDS)


def split_key(key: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed key, else ``None``."""
    mark, sep, rest = key.partition("_")
    prefix, sep2, secret = rest.partition("_")
    if mark != KEY_MARK or not sep or not sep2 or len(prefix) != 12 or not secret:
        return None
    return prefix, secret


class KeyStore:
    """API keys of every tenant under one Redis key prefix."""

    def __init__(self, client: redis.Redis, prefix: str, pepper: str) -> None:
        self._client = client
        self._prefix = prefix
        self._pepper = pepper.encode()
        self._verified: dict[str, tuple[str, Verified]] = {}  # key prefix -> (hash, record)

    def _record(self, key_prefix: str) -> str:
        return f"{self._prefix}:apikey:{key_prefix}"

    def _hash(self, key: str) -> str:
        return hmac.new(self._pepper, key.encode(), hashlib.sha256).hexdigest()

    def create(
        self,
        tenant: str,
        scopes: Iterable[str],
        *,
        name: str = "",
        expires_at: int | None = None,
    ) -> tuple[str, ApiKey]:
        """A new key: ``(the full key, shown once; its record)``."""
        wanted = tuple(dict.fromkeys(scopes))
        unknown = [s for s in wanted if s not in SCOPES]
        if unknown or not wanted:
            raise ValueError(f"scopes must be among {', '.join(SCOPES)} (got {list(wanted)})")
        if not tenant or len(tenant) > 64:
            raise ValueError("a tenant is 1 to 64 characters")
        key_prefix = secrets.token_hex(6)
        key = f"{KEY_MARK}_{key_prefix}_{secrets.token_urlsafe(32)}"
        record = ApiKey(
            prefix=key_prefix,
            tenant=tenant,
            scopes=wanted,
            name=name,
            created_at=int(time.time() * 1000),
            expires_at=expires_at,
            revoked_at=None,
        )
        fields: dict[FieldT, EncodableT] = {
            "hash": self._hash(key),
            "tenant": tenant,
            "scopes": ",".join(wanted),
            "name": name,
            "created_at": str(record.created_at),
            "expires_at": "" if expires_at is None else str(expires_at),
            "revoked_at": "",
        }
        try:
            pipe = self._client.pipeline()
            pipe.hset(self._record(key_prefix), mapping=fields)
            pipe.sadd(f"{self._prefix}:apikeys", key_prefix)
            pipe.execute()
        except redis.RedisError as exc:
            raise SinkError(f"Redis: cannot store API key: {exc}") from exc
        return key, record

    def authenticate(self, key: str) -> ApiKey | None:
        """The record of ``key`` if it exists and its hash matches (any state), else ``None``."""
        verified = self.verify(key)
        return None if verified is None else verified.record

    def verify(self, key: str) -> Verified | None:
        """:meth:`authenticate` read from Redis now, with what the record read; kept for
        :meth:`cached`."""
        parts = split_key(key)
        if parts is None:
            return None
        record_key = self._record(parts[0])
        try:
            fields = _raw(self._client.hgetall(record_key))
        except redis.RedisError as exc:
            raise SinkError(f"Redis: cannot read API keys: {exc}") from exc
        if not fields:
            self._verified.pop(parts[0], None)
            return None
        stored = fields.get(b"hash", b"").decode()
        digest = self._hash(key)
        if not hmac.compare_digest(stored, digest):
            return None
        verified = Verified(_parse(parts[0], fields), record_key, fingerprint(fields))
        if len(self._verified) >= CACHE_SIZE:
            self._verified.clear()
        self._verified[parts[0]] = (digest, verified)
        return verified

    def cached(self, key: str) -> Verified | None:
        """What :meth:`verify` last read for ``key`` in this process, without asking Redis:
        the caller must confirm it is current (its :attr:`Verified.fingerprint`) before
        relying on it. ``None`` when not kept (or ``key``'s secret does not match)."""
        parts = split_key(key)
        if parts is None:
            return None
        kept = self._verified.get(parts[0])
        if kept is None or not hmac.compare_digest(kept[0], self._hash(key)):
            return None
        return kept[1]

    def get(self, key_prefix: str) -> ApiKey | None:
        """A key's record by prefix."""
        try:
            fields = _raw(self._client.hgetall(self._record(key_prefix)))
        except redis.RedisError as exc:
            raise SinkError(f"Redis: cannot read API keys: {exc}") from exc
        return _parse(key_prefix, fields) if fields else None

    def list(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key (of ``tenant``, or all), oldest first."""
        try:
            members = self._client.smembers(f"{self._prefix}:apikeys")
            prefixes = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        except redis.RedisError as exc:
            raise SinkError(f"Redis: cannot list API keys: {exc}") from exc
        found = [k for k in (self.get(p) for p in prefixes) if k is not None]
        return sorted(
            (k for k in found if tenant is None or k.tenant == tenant),
            key=lambda k: (k.created_at, k.prefix),
        )

    def revoke(self, key_prefix: str, tenant: str | None = None) -> ApiKey | None:
        """Revoke a key (of ``tenant`` when given); ``None`` if there is no such key."""
        record = self.get(key_prefix)
        if record is None or (tenant is not None and record.tenant != tenant):
            return None
        if record.revoked_at is None:
            now = int(time.time() * 1000)
            try:
                self._client.hset(self._record(key_prefix), "revoked_at", str(now))
            except redis.RedisError as exc:
                raise SinkError(f"Redis: cannot revoke API key: {exc}") from exc
            record = self.get(key_prefix)
        return record


def _raw(fields: Any) -> dict[bytes, bytes]:
    """A HGETALL reply as bytes (the client is not built with decode_responses)."""
    return {
        (k if isinstance(k, bytes) else str(k).encode()): (
            v if isinstance(v, bytes) else str(v).encode()
        )
        for k, v in dict(fields).items()
    }


def _parse(key_prefix: str, fields: dict[bytes, bytes]) -> ApiKey:
    def text(name: str) -> str:
        return fields.get(name.encode(), b"").decode()

    def millis(name: str) -> int | None:
        value = text(name)
        return int(value) if value else None

    return ApiKey(
        prefix=key_prefix,
        tenant=text("tenant"),
        scopes=tuple(s for s in text("scopes").split(",") if s),
        name=text("name"),
        created_at=millis("created_at") or 0,
        expires_at=millis("expires_at"),
        revoked_at=millis("revoked_at"),
    )
