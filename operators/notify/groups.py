"""An aggregation group's state and the notification a flush of it makes; plain data, so
the notifier persists groups and queues notifications as JSON."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson


@dataclass(slots=True)
class GroupAlert:
    """One alert instance as a group knows it."""

    instance: str
    rule: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    status: str
    """``firing``, ``nodata`` or ``resolved``."""
    starts_at: int
    """Event time the breach began (ms)."""
    at: int
    """Event time of the transition this alert reflects."""
    value: float | None
    transition_id: str
    ends_at: int | None = None
    """Event time it resolved."""

    @property
    def active(self) -> bool:
        return self.status != "resolved"


@dataclass(slots=True)
class Group:
    """One aggregation group: its alerts and its timers (wall-clock ms)."""

    key: str
    route: int
    receiver: str
    tenant: str
    labels: dict[str, str]
    next_flush: int
    alerts: dict[str, GroupAlert] = field(default_factory=dict)
    last_sent: int | None = None
    seq: int = 0
    """Notifications made so far: part of the next one's dedup key."""
    notified: dict[str, str] = field(default_factory=dict)
    """Instance → transition id of the active alerts the last notification reported."""

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Group:
        data = orjson.loads(raw)
        data["alerts"] = {k: GroupAlert(**v) for k, v in data["alerts"].items()}
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Notification:
    """What a receiver gets for one flush of one group."""

    dedup_key: str
    receiver: str
    tenant: str
    group_key: str
    group_labels: dict[str, str]
    alerts: tuple[GroupAlert, ...]
    """Active alerts first, then resolved ones."""
    seq: int
    made_at: int
    """Wall-clock ms of the flush."""
    repeat: bool
    """Nothing changed since the last one: a repeat after ``repeat_interval``."""

    @property
    def status(self) -> str:
        """``firing`` while any alert is active, else ``resolved``."""
        return "firing" if any(a.active for a in self.alerts) else "resolved"

    @property
    def common_labels(self) -> dict[str, str]:
        """Labels every alert shares with the same value."""
        if not self.alerts:
            return {}
        first = self.alerts[0].labels
        return {
            k: v for k, v in first.items() if all(a.labels.get(k) == v for a in self.alerts[1:])
        }

    @property
    def common_annotations(self) -> dict[str, str]:
        if not self.alerts:
            return {}
        first = self.alerts[0].annotations
        return {
            k: v
            for k, v in first.items()
            if all(a.annotations.get(k) == v for a in self.alerts[1:])
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what the webhook posts, and the outbox keeps)."""
        return {
            "dedup_key": self.dedup_key,
            "receiver": self.receiver,
            "status": self.status,
            "tenant": self.tenant,
            "group_key": self.group_key,
            "group_labels": self.group_labels,
            "common_labels": self.common_labels,
            "common_annotations": self.common_annotations,
            "seq": self.seq,
            "made_at": self.made_at,
            "repeat": self.repeat,
            "alerts": [asdict(a) for a in self.alerts],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Notification:
        return cls(
            dedup_key=data["dedup_key"],
            receiver=data["receiver"],
            tenant=data["tenant"],
            group_key=data["group_key"],
            group_labels=data["group_labels"],
            alerts=tuple(GroupAlert(**a) for a in data["alerts"]),
            seq=data["seq"],
            made_at=data["made_at"],
            repeat=data["repeat"],
        )


def dedup_key(group: Group, alerts: Iterable[GroupAlert]) -> str:
    """Stable per notification: the group, its sequence number and what it reports."""
    reported = sorted((a.instance, a.status, a.transition_id) for a in alerts)
    raw = orjson.dumps([group.key, group.seq, reported])
    return hashlib.blake2b(raw, digest_size=16).hexdigest()
