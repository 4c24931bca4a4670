"""Alertmanager-style dispatch of alert transitions: routing, grouping, inhibition, mute and
active time intervals, silences and acknowledgements. Pure: the wall clock is an argument.

```
transition ─▶ routing tree (matchers, continue) ─▶ group (tenant, route, group_by values)
                                                            │ group_wait, then every group_interval
                                                            ▼
                         flush: drop silenced and inhibited alerts; muted (or not
                                 active) route: skip
                                 send when an alert is new or resolved, or repeat_interval passed
                                 (repeats only while some firing alert is not acknowledged)
                                                            ▼
                                          Notification (stable dedup key)
```

Rule states are event time; grouping timers are wall-clock by nature (as in
Alertmanager). A group's state — its alerts, when it flushes next, what it
notified last and how many notifications it made (``seq``) — is plain data
(:meth:`Group.to_json`), so a notifier can persist it with its input offsets and
its outbox in one step. A notification's ``dedup_key`` is a hash of the group,
``seq`` and the transitions it reports: the same for every re-send of it.

Only the states a person acts on become alerts here: Firing and NoData are
active alerts; Recovering keeps an alert active; Normal or Pending after an
active state resolves it. Pending alone is not notified.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import Any

import orjson

from riffle.config.notifications import (
    ChildRoute,
    InhibitRule,
    Matcher,
    NotificationsSpec,
    RootRoute,
    matches_all,
)
from riffle.config.time_intervals import TimeInterval
from riffle.operators.alerts.transitions import AlertTransition


def _ms_of(duration: timedelta) -> int:
    return int(duration.total_seconds() * 1000)


@dataclass(frozen=True, slots=True)
class Route:
    """One node of the routing tree, inherited settings filled in; ``index`` is its place in
    a pre-order walk (0: the default route), ``children`` the indexes of its routes."""

    index: int
    receiver: str
    matchers: tuple[Matcher, ...]
    continue_: bool
    group_by: tuple[str, ...]
    group_wait_ms: int
    group_interval_ms: int
    repeat_ms: int
    mute: tuple[TimeInterval, ...]
    active: tuple[TimeInterval, ...] = ()
    """Empty: always active."""
    children: tuple[int, ...] = ()


def compile_routes(spec: NotificationsSpec) -> list[Route]:
    """The routing tree in pre-order: the default route first, every child after its
    parent; unset receiver, ``group_by`` and timings come from the parent."""
    root = spec.route

    def intervals(names: list[str]) -> tuple[TimeInterval, ...]:
        found = [spec.interval(n) for n in names]
        return tuple(t for t in found if t is not None)

    out: list[Route] = []

    def add(node: RootRoute | ChildRoute, parent: Route | None) -> int:
        index = len(out)
        if parent is None:
            assert isinstance(node, RootRoute)
            route = Route(
                index,
                node.receiver,
                (),
                False,
                tuple(node.group_by),
                _ms_of(node.group_wait),
                _ms_of(node.group_interval),
                _ms_of(node.repeat_interval),
                intervals(node.mute_time_intervals),
                intervals(node.active_time_intervals),
            )
        else:
            assert isinstance(node, ChildRoute)
            route = Route(
                index,
                node.receiver or parent.receiver,
                tuple(node.matchers),
                node.continue_,
                tuple(node.group_by) if node.group_by is not None else parent.group_by,
                parent.group_wait_ms if node.group_wait is None else _ms_of(node.group_wait),
                parent.group_interval_ms
                if node.group_interval is None
                else _ms_of(node.group_interval),
                parent.repeat_ms if node.repeat_interval is None else _ms_of(node.repeat_interval),
                intervals(node.mute_time_intervals),
                intervals(node.active_time_intervals),
            )
        out.append(route)
        children = tuple(add(child, route) for child in node.routes)
        out[index] = replace(route, children=children)
        return index

    add(root, None)
    return out


def routes_for(routes: list[Route], labels: dict[str, str]) -> list[Route]:
    """The routes an alert takes, as in Alertmanager: from the default route down, the
    first matching child (and the next matching ones while a match says ``continue``) is
    followed; a route none of whose children matches takes the alert itself."""

    def walk(node: Route) -> list[Route]:
        taken: list[Route] = []
        for i in node.children:
            child = routes[i]
            if matches_all(child.matchers, labels):
                taken += walk(child)
                if not child.continue_:
                    break
        return taken or [node]

    return walk(routes[0])


def group_of(route: Route, tenant: str, labels: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The group's key and labels: the tenant always, then the route's ``group_by``."""
    if route.group_by == ("...",):
        shown = dict(labels)
    else:
        shown = {name: labels.get(name, "") for name in route.group_by}
    raw = orjson.dumps([tenant, route.index, route.receiver, sorted(shown.items())])
    return hashlib.blake2b(raw, digest_size=10).hexdigest(), shown


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


Seen = tuple[int, list[str]]
"""An instance's newest event time and the ids of its transitions at that time."""
Silenced = Callable[[str, dict[str, str], int], bool]
"""(tenant, labels, now ms) → muted by a silence."""
Acked = Callable[[str, GroupAlert, int], bool]
"""(tenant, alert, now ms) → acknowledged (no repeats for it)."""


def _inhibited(rules: list[InhibitRule], alert: GroupAlert, sources: Iterable[GroupAlert]) -> bool:
    for rule in rules:
        if not matches_all(rule.target_matchers, alert.labels):
            continue
        for s in sources:
            if (
                s.instance != alert.instance
                and matches_all(rule.source_matchers, s.labels)
                and all(s.labels.get(n, "") == alert.labels.get(n, "") for n in rule.equal)
            ):
                return True
    return False


class Dispatcher:
    """Every group of a deployment. Feed transitions with :meth:`ingest`, ask
    :meth:`due` for the notifications whose time has come.

    ``groups`` and ``seen`` are the whole state; ``dirty``/``removed`` name the groups
    changed since :meth:`take_changes` was last called, so a caller persists only those.
    ``seen`` (instance → event time of its newest transitions and their ids: two can share
    one event time) makes a re-produced or older transition a no-op: the dataflow delivers
    transitions at least once.
    """

    def __init__(
        self,
        spec: NotificationsSpec,
        *,
        groups: dict[str, Group] | None = None,
        seen: dict[str, Seen] | None = None,
        silenced: Silenced | None = None,
        acked: Acked | None = None,
    ) -> None:
        self.spec = spec
        self.routes = compile_routes(spec)
        self.groups: dict[str, Group] = groups if groups is not None else {}
        self.seen: dict[str, Seen] = seen if seen is not None else {}
        self.silenced = silenced
        self.acked = acked
        self.dirty: set[str] = set()
        self.removed: set[str] = set()
        self.dirty_seen: set[str] = set()

    def ingest(self, t: AlertTransition, now: int) -> bool:
        """Apply one transition; False when it was seen before or is older than one seen."""
        last = self.seen.get(t.instance)
        if last is not None and (
            t.at < last[0] or (t.at == last[0] and t.transition_id in last[1])
        ):
            return False
        ids = last[1] if last is not None and t.at == last[0] else []
        self.seen[t.instance] = (t.at, [*ids, t.transition_id])
        self.dirty_seen.add(t.instance)
        if t.to_state in ("firing", "nodata") and t.from_state != "recovering":
            status = t.to_state
        elif t.to_state in ("normal", "pending"):
            status = "resolved"
        else:  # recovering, or back to firing from recovering: the alert stays as it is
            return True
        labels = dict(t.labels)
        for route in routes_for(self.routes, labels):
            key, shown = group_of(route, t.tenant, labels)
            group = self.groups.get(key)
            if status == "resolved":
                known = None if group is None else group.alerts.get(t.instance)
                if group is None or known is None or not known.active:
                    continue
                known.status = "resolved"
                known.ends_at = t.at
                known.transition_id = t.transition_id
                known.annotations = dict(t.annotations)
                known.value = t.value
                known.at = t.at
            else:
                if group is None:
                    group = self.groups[key] = Group(
                        key, route.index, route.receiver, t.tenant, shown, now + route.group_wait_ms
                    )
                    self.removed.discard(key)
                group.alerts[t.instance] = GroupAlert(
                    instance=t.instance,
                    rule=t.rule,
                    severity=t.severity,
                    labels=labels,
                    annotations=dict(t.annotations),
                    status=status,
                    starts_at=t.active_at if t.active_at is not None else t.at,
                    at=t.at,
                    value=t.value,
                    transition_id=t.transition_id,
                )
            self.dirty.add(key)
        return True

    def next_wakeup(self) -> int | None:
        """The earliest wall-clock ms a group flushes, if any group exists."""
        return min((g.next_flush for g in self.groups.values()), default=None)

    def due(self, now: int) -> list[Notification]:
        """Flush every group whose time has come; the notifications to deliver."""
        ready = [g for g in self.groups.values() if g.next_flush <= now]
        if not ready:
            return []
        sources: dict[str, list[GroupAlert]] = {}
        if self.spec.inhibit_rules:
            for g in self.groups.values():
                for a in g.alerts.values():
                    if a.active:
                        sources.setdefault(g.tenant, []).append(a)
        out = []
        for group in sorted(ready, key=lambda g: (g.next_flush, g.key)):
            note = self._flush(group, now, sources.get(group.tenant, []))
            if note is not None:
                out.append(note)
        return out

    def _flush(self, group: Group, now: int, sources: list[GroupAlert]) -> Notification | None:
        route = self.routes[group.route] if group.route < len(self.routes) else self.routes[0]
        group.next_flush = now + route.group_interval_ms
        self.dirty.add(group.key)
        if any(iv.contains(now) for iv in route.mute) or (
            route.active and not any(iv.contains(now) for iv in route.active)
        ):
            return None
        firing = [
            a
            for a in group.alerts.values()
            if a.active
            and not (self.silenced is not None and self.silenced(group.tenant, a.labels, now))
            and not _inhibited(self.spec.inhibit_rules, a, sources)
        ]
        resolved = [
            a for a in group.alerts.values() if not a.active and a.instance in group.notified
        ]
        new = [a for a in firing if group.notified.get(a.instance) != a.transition_id]
        repeat = (
            bool(firing)
            and not new
            and not resolved
            and group.last_sent is not None
            and now - group.last_sent >= route.repeat_ms
            and any(
                not (self.acked is not None and self.acked(group.tenant, a, now)) for a in firing
            )
        )
        note = None
        if new or resolved or repeat:
            reported = sorted(firing, key=lambda a: a.instance) + sorted(
                resolved, key=lambda a: a.instance
            )
            note = Notification(
                dedup_key=dedup_key(group, reported),
                receiver=group.receiver,
                tenant=group.tenant,
                group_key=group.key,
                group_labels=dict(group.labels),
                alerts=tuple(reported),
                seq=group.seq,
                made_at=now,
                repeat=repeat,
            )
            group.seq += 1
            group.last_sent = now
            group.notified = {a.instance: a.transition_id for a in firing}
        for instance in [i for i, a in group.alerts.items() if not a.active]:
            del group.alerts[instance]
            group.notified.pop(instance, None)
        if not group.alerts:
            del self.groups[group.key]
            self.dirty.discard(group.key)
            self.removed.add(group.key)
        return note

    def active_alerts(self, receiver: str) -> list[GroupAlert]:
        """Active alerts in the groups of ``receiver`` (each instance once)."""
        found: dict[str, GroupAlert] = {}
        for g in self.groups.values():
            if g.receiver == receiver:
                found.update({a.instance: a for a in g.alerts.values() if a.active})
        return list(found.values())

    def take_changes(self) -> tuple[list[Group], list[str], dict[str, Seen]]:
        """Groups changed, groups removed and ``seen`` entries changed since the last call."""
        changed = [self.groups[k] for k in sorted(self.dirty) if k in self.groups]
        removed = sorted(self.removed)
        seen = {i: self.seen[i] for i in self.dirty_seen}
        self.dirty.clear()
        self.removed.clear()
        self.dirty_seen.clear()
        return changed, removed, seen
