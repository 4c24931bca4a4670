"""Silences: label matchers with a time range that mute notifications (not transitions).

A silence belongs to a tenant and lives in the Redis hash ``{prefix}:silences:{tenant}``
(id → JSON). It mutes a notification when, at the wall-clock time of sending,
``starts_at <= now < ends_at`` and every matcher holds for the alert's labels
(Alertmanager's rule; a label the alert lacks is the empty string).
Matcher operators: ``=``, ``!=``, ``=~`` and ``!~`` (regular expressions anchored at
both ends). Expired silences are kept until deleted, so they stay visible.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import orjson
import redis
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from operators.alerts import AlertTransition

MatchOp = Literal["=", "!=", "=~", "!~"]


class Matcher(BaseModel):
    """One condition on one label."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=128)
    value: str = Field(max_length=1024)
    op: MatchOp = "="

    @model_validator(mode="after")
    def _regex_compiles(self) -> Matcher:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"matcher {self.name!r}: not a regular expression: {exc}") from exc
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found


class SilenceSpec(BaseModel):
    """What a client sends to create a silence (times in ms since the epoch)."""

    model_config = ConfigDict(extra="forbid")
    matchers: list[Matcher] = Field(min_length=1, max_length=32)
    starts_at: int | None = Field(None, description="Default: now.")
    ends_at: int
    comment: str = Field("", max_length=2000)
    created_by: str = Field("", max_length=200)

    @field_validator("ends_at")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("ends_at is ms since the epoch")
        return value


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
        raw: Mapping[Any, Any] = self.client.hgetall(self.key(tenant))
        silences = [Silence.model_validate(orjson.loads(v)) for v in raw.values()]
        return sorted(silences, key=lambda s: (s.starts_at, s.id))

    def get(self, tenant: str, silence_id: str) -> Silence | None:
        raw = self.client.hget(self.key(tenant), silence_id)
        return None if raw is None else Silence.model_validate(orjson.loads(raw))

    def delete(self, tenant: str, silence_id: str) -> bool:
        return bool(self.client.hdel(self.key(tenant), silence_id))

    def mutes(self, t: AlertTransition, now_ms: int | None = None) -> bool:
        """Whether an active silence of ``t``'s tenant mutes it now."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        labels = dict(t.labels)
        return any(s.mutes(labels, now) for s in self.list(t.tenant))
