"""The record of one change of state of one alert instance."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """One change of state of one alert instance, the record every alert sink stores.

    ``transition_id`` is stable (tenant, rule, instance, event time, new state), so a
    replay writes the same rows and a notifier can use it as the dedup key.
    """

    tenant: str
    rule: str
    metric: str
    instance: str
    labels: tuple[tuple[str, str], ...]
    severity: str
    from_state: str
    to_state: str
    at: int
    """Event time (ms): the end of the window that caused the transition."""
    value: float | None
    active_at: int | None
    annotations: tuple[tuple[str, str], ...] = ()

    @property
    def transition_id(self) -> str:
        digest = hashlib.blake2b(
            orjson.dumps([self.tenant, self.rule, self.instance, self.at, self.to_state]),
            digest_size=12,
        )
        return digest.hexdigest()

    def to_json(self) -> bytes:
        data: dict[str, Any] = asdict(self)
        data["labels"] = dict(self.labels)
        data["annotations"] = dict(self.annotations)
        data["transition_id"] = self.transition_id
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> AlertTransition:
        data = orjson.loads(raw)
        data.pop("transition_id", None)
        data["labels"] = tuple(sorted(data["labels"].items()))
        data["annotations"] = tuple(sorted(data["annotations"].items()))
        return cls(**data)
