"""The ``riffle keys`` commands' work: create, list and revoke API keys in Redis."""

from __future__ import annotations

import time
from datetime import datetime

import redis

from riffle.config.durations import parse_duration
from riffle.config.errors import RiffleError
from riffle.config.settings import Settings
from riffle.sinks.redis.api_keys import ApiKey, KeyStore


class KeyCommandError(RiffleError):
    """A key command with a bad argument or an unknown key."""


def store(settings: Settings) -> KeyStore:
    """The key store of ``settings``."""
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2.0)
    return KeyStore(client, settings.redis_prefix, settings.api_key_pepper.get_secret_value())


def parse_expiry(text: str, now_ms: int) -> int:
    """An RFC 3339 instant or a duration from now, as epoch ms."""
    try:
        return now_ms + int(parse_duration(text).total_seconds() * 1000)
    except (ValueError, RiffleError):
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise KeyCommandError(f"--expires {text!r}: use 30d, 12h or an RFC 3339 instant") from None
    if moment.tzinfo is None:
        raise KeyCommandError(f"--expires {text!r}: an instant needs an offset or Z")
    return int(moment.timestamp() * 1000)


def create_key(
    settings: Settings, tenant: str, scopes: str, expires: str | None, name: str = ""
) -> tuple[str, ApiKey]:
    """A new key and its record."""
    now = int(time.time() * 1000)
    expires_at = None if expires is None else parse_expiry(expires, now)
    try:
        return store(settings).create(
            tenant,
            [s.strip() for s in scopes.split(",") if s.strip()],
            name=name,
            expires_at=expires_at,
        )
    except ValueError as exc:
        raise KeyCommandError(str(exc)) from None


def list_keys(settings: Settings, tenant: str | None) -> list[str]:
    """One line per key: prefix, tenant, scopes, state, name."""
    now = int(time.time() * 1000)
    return [
        f"{k.prefix}  {k.tenant}  {','.join(k.scopes)}  {k.state(now)}  {k.name}".rstrip()
        for k in store(settings).list(tenant)
    ]


def revoke_key(settings: Settings, prefix: str) -> ApiKey:
    """Revoke the key with ``prefix``."""
    record = store(settings).revoke(prefix)
    if record is None:
        raise KeyCommandError(f"no key with prefix {prefix!r}")
    return record
