"""The routing tree, as Alertmanager's: inherited settings filled in, the routes an alert
takes, and the group a route puts it in."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import timedelta

import orjson

from riffle.config.notifications import (
    ChildRoute,
    Matcher,
    NotificationsSpec,
    RootRoute,
    matches_all,
)
from riffle.config.time_intervals import TimeInterval


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


def notification_group(
    route: Route, tenant: str, labels: dict[str, str]
) -> tuple[str, dict[str, str]]:
    """The group's key and labels: the tenant always, then the route's ``group_by``."""
    if route.group_by == ("...",):
        shown = dict(labels)
    else:
        shown = {name: labels.get(name, "") for name in route.group_by}
    raw = orjson.dumps([tenant, route.index, route.receiver, sorted(shown.items())])
    return hashlib.blake2b(raw, digest_size=10).hexdigest(), shown
