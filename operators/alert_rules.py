"""Tenant alert rules as a versioned log, and which version applies at an event time.

Rules created through the API do not replace one another in place: every
create, update and delete is an entry of one append-only log
(:class:`RuleChange`), stamped with the event time from which it applies
(``effective_from``, the store's clock when it was written, never earlier than
any entry before it). A window ending at ``t`` is evaluated by the versions in
force at ``t``, so the alert stage, its fan-out and a replay of the same
windows all agree on which rule judged which window, whenever they happened to
read the log.

The log is complete only up to the time it was read (``complete_before``):
an entry written later is stamped at or after that time. A reader asked about
a later event time must read the log again first (:meth:`RuleBook.covers`).
Pure, no I/O: ``sinks.redis.rules`` reads and writes the log.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from riffle.config.alerts import AlertRule

_RULE: TypeAdapter[AlertRule] = TypeAdapter(AlertRule)


def rule_key(tenant: str, name: str) -> str:
    """A tenant rule's key in the alert stage (spec rules use their bare name)."""
    return f"{tenant}/{name}"


@dataclass(frozen=True, slots=True)
class RuleChange:
    """One entry of the rule log: ``rule`` is None for a deletion."""

    seq: int
    """Position in the log, from 1."""
    effective_from: int
    """Event time (ms) from which this version applies (inclusive)."""
    tenant: str
    name: str
    rule: dict[str, Any] | None

    @property
    def key(self) -> str:
        return rule_key(self.tenant, self.name)

    def parsed(self) -> AlertRule | None:
        """The rule model, or None for a deletion or a rule that no longer validates."""
        if self.rule is None:
            return None
        try:
            return _RULE.validate_python(self.rule)
        except ValidationError:
            return None

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "seq": self.seq,
                "effective_from": self.effective_from,
                "tenant": self.tenant,
                "name": self.name,
                "rule": self.rule,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> RuleChange:
        data = orjson.loads(raw)
        return cls(
            int(data["seq"]),
            int(data["effective_from"]),
            data["tenant"],
            data["name"],
            data["rule"],
        )


@dataclass
class RuleBook:
    """The log as read so far, indexed for "which versions apply at ``t``"."""

    entries: list[RuleChange] = field(default_factory=list)
    complete_before: int = -(2**62)
    """Every entry with ``effective_from`` before this has been read."""
    _timeline: dict[str, tuple[list[int], list[RuleChange]]] = field(default_factory=dict)
    _by_metric: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def extend(self, entries: Iterable[RuleChange], complete_before: int) -> None:
        """Append entries read after the ones held (``seq`` continues) and move the horizon."""
        for e in entries:
            if e.seq <= len(self.entries):
                continue
            if e.seq != len(self.entries) + 1:
                raise ValueError(f"rule log entry {e.seq} after {len(self.entries)}")
            self.entries.append(e)
            times, versions = self._timeline.setdefault(e.key, ([], []))
            times.append(e.effective_from)
            versions.append(e)
            parsed = e.parsed()
            if parsed is not None:
                keys = self._by_metric.setdefault((e.tenant, parsed.metric), [])
                if e.key not in keys:
                    bisect.insort(keys, e.key)
        self.complete_before = max(self.complete_before, complete_before)

    def covers(self, at: int) -> bool:
        """Whether the versions in force at ``at`` are known."""
        return at < self.complete_before

    def version_at(self, key: str, at: int) -> RuleChange | None:
        """The entry of ``key`` in force at ``at`` (None: none yet, or deleted)."""
        found = self._timeline.get(key)
        if found is None:
            return None
        times, versions = found
        i = bisect.bisect_right(times, at)
        if i == 0:
            return None
        entry = versions[i - 1]
        return None if entry.rule is None else entry

    def keys_for(self, tenant: str, metric: str) -> Sequence[str]:
        """Keys of every tenant rule that ever watched ``metric``, sorted."""
        return self._by_metric.get((tenant, metric), ())

    def due(self, applied: int, at: int) -> list[RuleChange]:
        """Entries after the first ``applied`` that are in force by ``at``, in log order."""
        out = []
        for e in self.entries[applied:]:
            if e.effective_from > at:
                break
            out.append(e)
        return out
