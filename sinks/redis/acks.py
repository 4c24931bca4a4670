"""Acknowledgements: someone has seen a firing alert; stop repeating it.

An ack belongs to one alert instance of one tenant and to one *episode* of it
(``starts_at``: the event time its breach began), so it ends by itself when the
alert resolves and fires again later. It may also end at ``until`` (wall-clock
ms). It lives in the Redis hash ``{prefix}:acks:{tenant}`` (instance → JSON).
An acknowledged alert still appears in notifications that something *changed*
(a new alert in its group, a resolution); only repeats are held back.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis
from pydantic import BaseModel, Field

from riffle.config.instants import EpochMs
from riffle.operators.notify.groups import GroupAlert


class AckSpec(BaseModel):
    """What a client sends to acknowledge an alert."""

    by: str = Field(min_length=1, max_length=200)
    comment: str = Field("", max_length=2000)
    until: EpochMs | None = Field(
        None,
        description="Wall-clock ms the ack ends, in the future; default never.",
        examples=[4_102_444_800_000],
    )


class Ack(BaseModel):
    """A stored acknowledgement."""

    tenant: str
    instance: str
    starts_at: int
    """The episode acknowledged: event time its breach began."""
    by: str
    comment: str = ""
    until: int | None = None
    acked_at: int

    def holds(self, starts_at: int, now_ms: int) -> bool:
        """Whether this ack covers the episode starting at ``starts_at`` at ``now_ms``."""
        return self.starts_at == starts_at and (self.until is None or now_ms < self.until)


def episode_start(row: dict[str, Any]) -> int:
    """The episode of an alert row (a transition as JSON): its breach start, else its time."""
    active_at = row.get("active_at")
    return int(active_at if active_at is not None else row["at"])


class AckStore:
    """Acknowledgements of every tenant in Redis."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def key(self, tenant: str) -> str:
        return f"{self.prefix}:acks:{tenant}"

    def ack(
        self, tenant: str, instance: str, starts_at: int, spec: AckSpec, now_ms: int | None = None
    ) -> Ack:
        """Store (or replace) the ack of ``instance``'s episode starting at ``starts_at``."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        if spec.until is not None and spec.until <= now:
            raise ValueError("an ack's 'until' lies in the future")
        ack = Ack(
            tenant=tenant,
            instance=instance,
            starts_at=starts_at,
            by=spec.by,
            comment=spec.comment,
            until=spec.until,
            acked_at=now,
        )
        self.client.hset(self.key(tenant), instance, ack.model_dump_json())
        return ack

    def all(self, tenant: str) -> dict[str, Ack]:
        """Every ack of ``tenant`` by instance (expired ones included)."""
        raw = self.client.hgetall(self.key(tenant))
        return {
            (k.decode() if isinstance(k, bytes) else k): Ack.model_validate(orjson.loads(v))
            for k, v in raw.items()
        }

    def get(self, tenant: str, instance: str) -> Ack | None:
        raw = self.client.hget(self.key(tenant), instance)
        return None if raw is None else Ack.model_validate(orjson.loads(raw))

    def delete(self, tenant: str, instance: str) -> bool:
        return bool(self.client.hdel(self.key(tenant), instance))

    def acked(self, tenant: str, alert: GroupAlert, now_ms: int) -> bool:
        """The dispatcher's question: is this alert's current episode acknowledged now?"""
        ack = self.get(tenant, alert.instance)
        return ack is not None and ack.holds(alert.starts_at, now_ms)
