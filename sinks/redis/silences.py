"""Silences: label matchers with a time range that mute notifications (not transitions).

A silence belongs to a tenant and lives in the Redis hash ``{prefix}:silences:{tenant}``
(id → JSON). It mutes a notification when, at the wall-clock time of sending,
``starts_at <= now < ends_at`` and every matcher holds for the alert's labels
(Alertmanager's rule; a label the alert lacks is the empty string).
Matcher operators: ``=``, ``!=``, ``=~`` and ``!~`` (regular expressions anchored at
both ends). Expired silences are kept until deleted, so they stay visible.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
import redis
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from riffle.config.instants import EpochMs
from riffle.config.notifications import Matcher

__all__ = ["Matcher", "Silence", "SilenceSpec", "SilenceStore"]
log = structlog.get_logger(__name__)


class SilenceSpec(BaseModel):
    """What a client sends to create a silence (times in ms since the epoch).

    Every field is bounded here, so whatever is accepted can be stored and read
    back by the API and the notifier (an epoch beyond the year 9999 could not).
    """

    model_config = ConfigDict(extra="forbid")
    matchers: list[Matcher] = Field(min_length=1, max_length=32)
    starts_at: EpochMs | None = Field(None, description="Default: now.", examples=[0])
    ends_at: EpochMs = Field(description="After starts_at.", examples=[4_102_444_800_000])
    comment: str = Field("", max_length=2000)
    created_by: str = Field("", max_length=200)


class Silence(BaseModel):
    """A stored silence."""

    id: str
    tenant: str
    matchers: list[Matcher]
    starts_at: int
    ends_at: int
    comment: str = ""
    created_by: str = ""

    def active(self, now_ms: int) -> bool:
        return self.starts_at <= now_ms < self.ends_at

    def mutes(self, labels: Mapping[str, str], now_ms: int) -> bool:
        return self.active(now_ms) and all(m.matches(labels) for m in self.matchers)


class SilenceStore:
    """Silences of every tenant in Redis."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def key(self, tenant: str) -> str:
        return f"{self.prefix}:silences:{tenant}"

    def create(self, tenant: str, spec: SilenceSpec, now_ms: int | None = None) -> Silence:
        """Store a new silence; ``ValueError`` when it ends before it starts."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        starts = spec.starts_at if spec.starts_at is not None else now
        if spec.ends_at <= starts:
            raise ValueError("a silence ends after it starts")
        silence = Silence(
            id=uuid.uuid4().hex,
            tenant=tenant,
            matchers=spec.matchers,
            starts_at=starts,
            ends_at=spec.ends_at,
            comment=spec.comment,
            created_by=spec.created_by,
        )
        self.client.hset(self.key(tenant), silence.id, silence.model_dump_json())
        return silence

    def list(self, tenant: str) -> list[Silence]:
        """Every readable silence of ``tenant``; an entry that does not parse (written by
        hand, or before its fields were bounded) is logged and skipped, never raised."""
        raw: Mapping[Any, Any] = self.client.hgetall(self.key(tenant))
        silences = []
        for key, value in raw.items():
            try:
                silences.append(Silence.model_validate(orjson.loads(value)))
            except (orjson.JSONDecodeError, ValidationError) as exc:
                log.warning("silence_unreadable", tenant=tenant, id=str(key), error=str(exc))
        return sorted(silences, key=lambda s: (s.starts_at, s.id))

    def get(self, tenant: str, silence_id: str) -> Silence | None:
        raw = self.client.hget(self.key(tenant), silence_id)
        return None if raw is None else Silence.model_validate(orjson.loads(raw))

    def delete(self, tenant: str, silence_id: str) -> bool:
        return bool(self.client.hdel(self.key(tenant), silence_id))

    def mutes(self, tenant: str, labels: Mapping[str, str], now_ms: int | None = None) -> bool:
        """Whether an active silence of ``tenant`` mutes an alert with ``labels`` now."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        return any(s.mutes(labels, now) for s in self.list(tenant))
