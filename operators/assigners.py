"""Window assigners: which windows an event time falls in, one type per window kind.

Every kind the spec knows (``tumbling``, ``hopping``, ``calendar``,
``session``) is one class here and :func:`assigner_for` is the only place
that maps a metric's window to its assigner: the ingest stage asks an
assigner for spans (or, for sessions, to group a series' event times), and
the windows stage asks it whether its windows merge. A new kind is a new
class and a line in :func:`assigner_for`.

Fixed windows (all but sessions) are ``[start, end)`` spans in epoch
milliseconds: tumbling and hopping ones aligned to the Unix epoch (UTC),
calendar ones to the tenant's local hours or days.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from riffle.config.spec import MetricSpec, PipelineSpec
from riffle.operators.calendar import Calendar

Span = tuple[int, int]
"""``(start, end)`` of a window, epoch milliseconds."""


class Tumbling:
    """Back-to-back windows of ``size_ms``; :attr:`tumbling_ms` lets the hot loop inline it."""

    __slots__ = ("size_ms",)
    merges = False

    def __init__(self, size_ms: int) -> None:
        self.size_ms = size_ms

    @property
    def tumbling_ms(self) -> int:
        """The size: an event at ``ts`` is in ``[ts - ts % size, ... + size)``."""
        return self.size_ms

    def spans(self, ts: int, tenant: str) -> list[Span]:
        """The one window holding ``ts``."""
        start = ts - ts % self.size_ms
        return [(start, start + self.size_ms)]


class Hopping:
    """Windows of ``size_ms`` starting every ``step_ms``: each event is in size / step of them."""

    __slots__ = ("size_ms", "step_ms")
    merges = False
    tumbling_ms = 0

    def __init__(self, size_ms: int, step_ms: int) -> None:
        self.size_ms = size_ms
        self.step_ms = step_ms

    def spans(self, ts: int, tenant: str) -> list[Span]:
        """Every window holding ``ts``, oldest first."""
        step, size = self.step_ms, self.size_ms
        last = ts - ts % step
        return [(s, s + size) for s in range(last - size + step, last + 1, step)]


class CalendarUnits:
    """A tenant's local hours or days (``unit_ms``), in its time zone (DST included)."""

    __slots__ = ("_calendars", "_recent", "size_ms", "zone", "zones")
    merges = False
    tumbling_ms = 0

    def __init__(self, unit_ms: int, zones: Mapping[str, str], zone: str) -> None:
        self.size_ms = unit_ms
        self.zones = dict(zones)
        self.zone = zone
        self._calendars: dict[str, tuple[int, int, Calendar]] = {}
        """Per tenant: the span its calendar covers, and the calendar."""
        self._recent: dict[str, Span] = {}
        """Per tenant: the last local window found (most events fall into it)."""

    def spans(self, ts: int, tenant: str) -> list[Span]:
        """The tenant's local hour or day holding ``ts``."""
        recent = self._recent.get(tenant)
        if recent is not None and recent[0] <= ts < recent[1]:
            return [recent]
        held = self._calendars.get(tenant)
        if held is None or not held[0] <= ts < held[1]:
            # A year of offsets around ts (refreshed when event time leaves it).
            low, high = ts - 183 * 86_400_000, ts + 183 * 86_400_000
            held = (low, high, Calendar.of(self.zones.get(tenant, self.zone), low, high))
            self._calendars[tenant] = held
        calendar, unit = held[2], self.size_ms
        start = calendar.bucket(ts, unit)
        recent = self._recent[tenant] = (start, calendar.following(start, unit))
        return [recent]


class Sessions:
    """Sessions of one series: a run of events no more than ``gap_ms`` apart.

    A session is ``[first event, last event + gap)``; pieces of one session
    found in different batches or partitions overlap and merge in the
    windows stage (:attr:`merges`).
    """

    __slots__ = ("size_ms",)
    merges = True
    tumbling_ms = 0

    def __init__(self, gap_ms: int) -> None:
        self.size_ms = gap_ms

    def spans(self, ts: int, tenant: str) -> list[Span]:
        """Sessions are not fixed spans: the ingest stage groups events with :meth:`group`."""
        raise TypeError("session windows are grouped per series, not assigned per event")

    def group(
        self,
        points: list[tuple[int, Any]],
        new: Callable[[], list[Any]],
        fold: Callable[[list[Any], Any], None],
    ) -> list[tuple[int, int, list[Any]]]:
        """One series' ``(ts, value)`` points as sessions ``(first, last + gap, aggregate)``."""
        points.sort(key=lambda point: point[0])
        gap = self.size_ms
        out: list[tuple[int, int, list[Any]]] = []
        start = last = points[0][0]
        agg = new()
        for ts, value in points:
            if ts - last >= gap:
                out.append((start, last + gap, agg))
                start, agg = ts, new()
            last = ts
            fold(agg, value)
        out.append((start, last + gap, agg))
        return out


WindowAssigner = Tumbling | Hopping | CalendarUnits | Sessions


def assigner_for(metric: MetricSpec, spec: PipelineSpec) -> WindowAssigner:
    """The assigner of ``metric``'s window (calendar units follow ``spec``'s tenants' zones)."""
    window = metric.window
    if window.kind == "session":
        return Sessions(metric.window_ms)
    if window.kind == "hopping":
        return Hopping(metric.window_ms, window.step_ms)
    if window.kind == "calendar":
        zones = {name: tenant.time_zone for name, tenant in spec.tenants.items()}
        return CalendarUnits(metric.window_ms, zones, spec.time_zone)
    return Tumbling(metric.window_ms)
