"""Every group of a deployment: transitions in, notifications out when their time comes."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from riffle.config.notifications import InhibitRule, NotificationsSpec, matches_all
from riffle.operators.alerts.transitions import AlertTransition
from riffle.operators.notify.groups import Group, GroupAlert, Notification, dedup_key
from riffle.operators.notify.routes import compile_routes, notification_group, routes_for

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
            key, shown = notification_group(route, t.tenant, labels)
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
