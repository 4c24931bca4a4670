"""The spec compiled for the hot loop: per event type, what each metric takes.

:func:`compile_plans` turns the spec's metrics into :class:`MetricPlan` objects
with prebuilt getters, so reading an event touches only plain dict lookups.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from riffle.config.base import Condition
from riffle.config.spec import PipelineSpec
from riffle.operators.calendar import Calendar
from riffle.operators.envelope import EnvelopeError
from riffle.operators.records import Dims
from riffle.operators.sketches import SketchSpec, sketch_for

Getter = Callable[[dict[str, Any]], Any]
MAX_DIM_VALUE = 128


def getter(path: str) -> Getter:
    """A function reading a dotted path (``props.amount``) from an event; ``None`` if absent."""
    parts = path.split(".")
    if len(parts) == 1:
        key = parts[0]
        return lambda event: event.get(key)
    if len(parts) == 2:
        outer, inner = parts

        def two(event: dict[str, Any]) -> Any:
            holder = event.get(outer)
            return holder.get(inner) if type(holder) is dict else None

        return two

    def deep(event: dict[str, Any]) -> Any:
        value: Any = event
        for part in parts:
            if type(value) is not dict:
                return None
            value = value.get(part)
        return value

    return deep


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def predicate(conditions: list[Condition]) -> Callable[[dict[str, Any]], bool] | None:
    """All conditions as one test; a comparison between mismatched types is false."""
    if not conditions:
        return None
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for cond in conditions:
        get = getter(cond.path)
        if cond.op == "exists":
            tests.append(_exists(get, want=cond.value is not False))
            continue
        compare, expected = _COMPARE[cond.op], cond.value

        def test(
            e: dict[str, Any],
            get: Getter = get,
            compare: Callable[[Any, Any], bool] = compare,
            expected: Any = expected,
        ) -> bool:
            actual = get(e)
            if actual is None:
                return False
            try:
                return compare(actual, expected)
            except TypeError:
                return False

        tests.append(test)
    return lambda e: all(t(e) for t in tests)


def _exists(get: Getter, *, want: bool) -> Callable[[dict[str, Any]], bool]:
    return lambda event: (get(event) is not None) is want


@dataclass(frozen=True, slots=True)
class MetricPlan:
    """What one metric takes from one event."""

    name: str
    window_ms: int
    """Window size (the gap for sessions)."""
    step_ms: int
    """Distance between window starts; equals ``window_ms`` unless hopping."""
    session: bool
    lateness_ms: int
    """How far this metric's watermark trails the partition clock."""
    horizon_ms: int
    """With ``late: correct``, corrections are taken until the watermark passes
    ``end + horizon_ms``; 0 means late events are dropped."""
    value_path: str | None
    value: Getter | None
    dims: tuple[tuple[str, Getter, str, str], ...]
    """``(name, getter, default, path)`` per dimension, sorted by name."""
    accepts: Callable[[dict[str, Any]], bool] | None
    sketch: SketchSpec | None = None
    """Distinct counts and top-k read any scalar as text; quantiles read numbers."""
    max_values: int = 0
    """Cardinality cap (0: none): all the metric's series of a tenant share one shard."""
    calendar_ms: int = 0
    """Calendar windows: the local unit (an hour or a day) in the tenant's zone; 0: none."""
    zones: Mapping[str, str] = field(default_factory=dict, compare=False)
    """Calendar windows: the time zone of each listed tenant."""
    zone: str = "UTC"
    """Calendar windows: the time zone of the other tenants."""
    _calendars: dict[str, tuple[int, int, Calendar]] = field(default_factory=dict, compare=False)
    """Per tenant: the span its calendar covers, and the calendar."""
    _recent: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False)
    """Per tenant: the last local window found (most events fall into it)."""

    def spans(self, ts: int, tenant: str) -> list[tuple[int, int]]:
        """``(start, end)`` of every window holding ``ts``: epoch-aligned tumbling or hopping
        windows, or the tenant's local hour or day."""
        if self.calendar_ms:
            return [self._local(ts, tenant)]
        last = ts - ts % self.step_ms
        size = self.window_ms
        return [(s, s + size) for s in range(last - size + self.step_ms, last + 1, self.step_ms)]

    def _local(self, ts: int, tenant: str) -> tuple[int, int]:
        recent = self._recent.get(tenant)
        if recent is not None and recent[0] <= ts < recent[1]:
            return recent
        held = self._calendars.get(tenant)
        if held is None or not held[0] <= ts < held[1]:
            # A year of offsets around ts (refreshed when event time leaves it).
            low, high = ts - 183 * 86_400_000, ts + 183 * 86_400_000
            held = (low, high, Calendar.of(self.zones.get(tenant, self.zone), low, high))
            self._calendars[tenant] = held
        calendar, unit = held[2], self.calendar_ms
        start = calendar.bucket(ts, unit)
        recent = self._recent[tenant] = (start, calendar.following(start, unit))
        return recent

    def read(self, event: dict[str, Any]) -> tuple[Dims, Any] | None:
        """The series dimensions and value this event contributes, or ``None`` if filtered.

        Distinct and top-k metrics also pass over events that lack their value.

        Raises :class:`EnvelopeError` (``invalid``) when the event lacks what the
        metric needs, so the caller can reject the event as a whole.
        """
        if self.accepts is not None and not self.accepts(event):
            return None
        value: Any
        if self.value is None:
            value = 1.0
        else:
            raw = self.value(event)
            kind = type(raw)
            if self.sketch is not None and self.sketch.kind != "quantiles":
                if raw is None:  # nothing to count distinct or rank: not this metric's event
                    return None
                if kind is dict or kind is list:
                    raise EnvelopeError(
                        "invalid", self.value_path or "", f"metric {self.name} needs a scalar"
                    )
                value = ("true" if raw else "false") if kind is bool else str(raw)
            elif (kind is not int and kind is not float) or not math.isfinite(raw):
                raise EnvelopeError(
                    "invalid", self.value_path or "", f"metric {self.name} needs a finite number"
                )
            else:
                value = float(raw)
        dims = []
        for name, get, default, path in self.dims:
            raw = get(event)
            kind = type(raw)
            if raw is None:
                text = default
            elif kind is str:
                text = raw[:MAX_DIM_VALUE] or default
            elif kind is bool:
                text = "true" if raw else "false"
            elif kind is int or kind is float:
                text = str(raw)
            else:
                raise EnvelopeError(
                    "invalid", path, f"dimension {name} must be a string, number or boolean"
                )
            dims.append((name, text))
        return tuple(dims), value


def compile_plans(
    spec: PipelineSpec, default_lateness_ms: int = 0
) -> dict[str, tuple[MetricPlan, ...]]:
    """Metric plans grouped by the event type that feeds them.

    ``default_lateness_ms`` applies to metrics that set no ``lateness``.
    """
    by_type: dict[str, list[MetricPlan]] = {name: [] for name in spec.event_types}
    for metric in spec.metrics:
        dims = tuple(
            (
                name,
                getter(spec.dimensions[name].path),
                spec.dimensions[name].default,
                spec.dimensions[name].path,
            )
            for name in sorted(metric.dimensions)
        )
        lateness = (
            default_lateness_ms
            if metric.lateness is None
            else int(metric.lateness.total_seconds() * 1000)
        )
        plan = MetricPlan(
            name=metric.name,
            window_ms=metric.window_ms,
            step_ms=metric.window.step_ms,
            session=metric.window.kind == "session",
            lateness_ms=lateness,
            horizon_ms=(
                int(metric.late_horizon.total_seconds() * 1000) if metric.late == "correct" else 0
            ),
            value_path=metric.value,
            value=getter(metric.value) if metric.value else None,
            dims=dims,
            accepts=predicate(metric.filter),
            sketch=sketch_for(metric),
            max_values=metric.max_values or 0,
            calendar_ms=metric.window_ms if metric.window.kind == "calendar" else 0,
            zones={name: tenant.time_zone for name, tenant in spec.tenants.items()},
            zone=spec.time_zone,
        )
        for event_type in metric.events:
            by_type[event_type].append(plan)
    return {name: tuple(plans) for name, plans in by_type.items()}
