"""The pipeline spec: event types, dimensions, metrics and retention, from YAML.

A spec is loaded once per process with :func:`load_spec`. Every problem is
reported at load time as a :class:`~config.errors.SpecError` whose lines read
``file:line: field.path: message`` so an editor can jump to them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from riffle.config.alerts import AlertRule, untag
from riffle.config.alerts import rule_problems as alert_problems
from riffle.config.base import FIELD_PATH, NAME, Condition, Strict, node_lines
from riffle.config.durations import Duration
from riffle.config.enrichment import EnrichmentSpec
from riffle.config.enrichment import reference_problems as enrichment_problems
from riffle.config.errors import SpecError
from riffle.config.imports import SPEC_DIR, ScheduledImportSpec, import_problems
from riffle.config.models import AnomalySpec, ForecastSpec
from riffle.config.notifications import NotificationsSpec, notification_problems
from riffle.config.predictions import PredictionSpec
from riffle.config.predictions import problems as prediction_problems
from riffle.config.reports import ReportSpec, report_problems

_NAME_RE = re.compile(NAME)

Aggregation = Literal["count", "sum", "avg", "min", "max", "distinct", "quantiles", "top_k"]
SKETCHED: frozenset[str] = frozenset({"distinct", "quantiles", "top_k"})
"""Aggregations kept as sketches (HLL, relative-error quantiles, frequent items)."""


class EventTypeSpec(Strict):
    """An event type the pipeline accepts; events of other types are dead letters."""

    description: str = ""


class DimensionSpec(Strict):
    """A named dimension: where its value sits in the event, and what stands in when absent."""

    path: str = Field(pattern=FIELD_PATH)
    description: str = ""
    default: str = "unknown"


def _window_shorthand(value: Any) -> Any:
    """``window: 1m`` means a tumbling window of one minute."""
    if isinstance(value, str | int | float | timedelta) and not isinstance(value, bool):
        return {"kind": "tumbling", "size": value}
    return value


class WindowSpec(Strict):
    """An event-time window: ``tumbling`` (size), ``hopping`` (size, step), ``session`` (gap)
    or ``calendar`` (unit).

    Tumbling and hopping windows are aligned to the Unix epoch, so their size
    and step must divide a day; a session window spans from its first event
    to its last event plus ``gap`` and closes after ``gap`` without events; a
    calendar window is one local ``hour`` or ``day`` of the event's tenant
    (its ``time_zone``), 23 or 25 hours long on DST changes.
    """

    kind: Literal["tumbling", "hopping", "session", "calendar"] = "tumbling"
    size: Duration | None = None
    step: Duration | None = None
    gap: Duration | None = None
    unit: Literal["hour", "day"] | None = None

    @model_validator(mode="after")
    def _complete(self) -> WindowSpec:
        needs = {
            "tumbling": {"size"},
            "hopping": {"size", "step"},
            "session": {"gap"},
            "calendar": {"unit"},
        }[self.kind]
        given = {n for n in ("size", "step", "gap", "unit") if getattr(self, n) is not None}
        if needs - given:
            raise ValueError(f"a {self.kind} window needs {' and '.join(sorted(needs - given))}")
        if given - needs:
            raise ValueError(f"a {self.kind} window takes no {' or '.join(sorted(given - needs))}")
        for name in sorted(given & {"size", "step"}):
            seconds = getattr(self, name).total_seconds()
            if seconds < 1 or seconds != int(seconds) or seconds > 86_400:
                raise ValueError(f"window {name} must be whole seconds between 1s and 1d")
            if 86_400 % int(seconds):
                raise ValueError(f"window {name} must divide a day evenly (1s, 10s, 1m, 5m, 1h)")
        if self.gap is not None and not 1 <= self.gap.total_seconds() <= 86_400:
            raise ValueError("a session gap lies between 1s and 1d")
        if (
            self.step is not None
            and self.size is not None
            and (self.step > self.size or self.size.total_seconds() % self.step.total_seconds())
        ):
            raise ValueError("a hopping window's size must be a multiple of its step")
        return self

    @property
    def size_ms(self) -> int:
        """Window length (tumbling, hopping), the session gap, or a calendar unit's usual
        length, in milliseconds."""
        if self.unit is not None:
            return 3_600_000 if self.unit == "hour" else 86_400_000
        length = self.gap if self.kind == "session" else self.size
        assert length is not None
        return int(length.total_seconds() * 1000)

    @property
    def step_ms(self) -> int:
        """Distance between window starts: the step when hopping, else the size (or gap)."""
        return int(self.step.total_seconds() * 1000) if self.step is not None else self.size_ms


class MetricSpec(Strict):
    """A metric: which events feed it, how they aggregate, over which window and dimensions."""

    name: str = Field(pattern=NAME)
    description: str = ""
    unit: str = ""
    events: list[str] = Field(min_length=1)
    aggregation: Aggregation
    value: str | None = Field(None, pattern=r"^(props|context)(\.[A-Za-z0-9_\-]+)+$")
    dimensions: list[str] = Field(default_factory=list, max_length=8)
    window: Annotated[WindowSpec, BeforeValidator(_window_shorthand)] = WindowSpec(
        kind="tumbling", size=timedelta(minutes=1)
    )
    filter: list[Condition] = Field(default_factory=list)
    lateness: Duration | None = None
    """How far this metric's watermark trails the newest event (default: the setting)."""
    late: Literal["drop", "correct"] = "drop"
    """Events behind the watermark: dead-lettered, or folded into a corrected final."""
    late_horizon: Duration = timedelta(hours=1)
    """With ``late: correct``, how long after a window's end corrections are accepted."""
    quantiles: list[float] = Field(default_factory=lambda: [0.5, 0.9, 0.99], min_length=1)
    """``quantiles`` metrics: which ones to report; the first is the metric's value."""
    top: int = Field(10, ge=1, le=1000)
    """``top_k`` metrics: how many frequent items to report."""
    precision: int = Field(12, ge=4, le=21)
    """``distinct`` metrics: HLL lgK (12: ~1.6 % standard error, ~4 KB per window)."""

    @field_validator("quantiles")
    @classmethod
    def _probabilities(cls, quantiles: list[float]) -> list[float]:
        if not all(0 < q < 1 for q in quantiles):
            raise ValueError("quantiles lie strictly between 0 and 1 (0.5, 0.9, 0.99)")
        return quantiles

    anomaly: AnomalySpec | None = None
    forecast: ForecastSpec | None = None
    max_values: int | None = Field(None, ge=1, le=100_000)
    """Cardinality cap: per window, the ``max_values`` series with the most events keep
    their own values and every other series is folded into one whose dimensions are
    all :data:`OTHER` (see ``docs/dataflow.md``)."""

    @property
    def window_ms(self) -> int:
        """The window length (a session's gap) in milliseconds, the flow's time unit."""
        return self.window.size_ms


OTHER = "other"
"""The dimension value of the series a capped metric folds its rarer series into."""


class RatioSpec(Strict):
    """A metric computed at query time as ``numerator / denominator`` of two stored metrics.

    Both are ``count`` or ``sum`` metrics with the same window, so every rollup
    is the ratio of summed numerators to summed denominators, never an average
    of ratios. The ratio's dimensions are ones both metrics have.
    """

    name: str = Field(pattern=NAME)
    description: str = ""
    unit: str = ""
    numerator: str
    denominator: str
    dimensions: list[str] = Field(default_factory=list, max_length=8)


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r} (e.g. UTC, Europe/Berlin)") from None
    return name


TimeZone = Annotated[str, BeforeValidator(_zone)]
"""An IANA time zone name, checked against the zoneinfo database at load."""


class TenantSpec(Strict):
    """Per-tenant settings of the pipeline."""

    time_zone: TimeZone = "UTC"
    """The zone of the tenant's calendar: hourly and daily rollups follow its local clock."""


class RetentionSpec(Strict):
    """How long windows are kept: ``hot`` in Redis, ``warehouse`` in the warehouse."""

    hot: Duration = timedelta(days=2)
    warehouse: Duration = timedelta(days=400)


class DedupSpec(Strict):
    """De-duplication by ``event_id`` in the dataflow (``operators.dedup``).

    Per tenant: the first copy of an event id counts, later copies whose event
    time lies within ``horizon`` of the newest event of their source partition
    count as ``duplicate`` and reach no window. Off only when ``enabled: false``.
    """

    enabled: bool = True
    horizon: Duration = timedelta(hours=24)

    @field_validator("horizon")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("the de-duplication horizon must be at least 1s")
        return value

    @property
    def horizon_ms(self) -> int:
        """The horizon in milliseconds, 0 when de-duplication is off."""
        return int(self.horizon.total_seconds() * 1000) if self.enabled else 0


class PipelineSpec(Strict):
    """A whole pipeline spec (``version: 1``)."""

    version: Literal[1] = 1
    event_types: dict[str, EventTypeSpec] = Field(min_length=1)
    dimensions: dict[str, DimensionSpec] = Field(default_factory=dict)
    metrics: list[MetricSpec] = Field(min_length=1)
    retention: RetentionSpec = RetentionSpec()
    dedup: DedupSpec = DedupSpec()
    """De-duplication by event id; on unless ``enabled: false``."""
    enrichment: EnrichmentSpec | None = None
    alerts: list[AlertRule] = Field(default_factory=list)
    """Alert rules (``config.alerts``), evaluated on final windows."""
    notifications: NotificationsSpec | None = None
    """Receivers, routing, grouping, inhibition and mute intervals (``config.notifications``)."""
    predictions: list[PredictionSpec] = Field(default_factory=list)
    """Online classifiers of entities (``config.predictions``)."""
    ratios: list[RatioSpec] = Field(default_factory=list)
    """Metrics computed at query time from two stored ones."""
    time_zone: TimeZone = "UTC"
    """The calendar of tenants not listed in ``tenants``."""
    tenants: dict[str, TenantSpec] = Field(default_factory=dict)
    reports: list[ReportSpec] = Field(default_factory=list)
    """Scheduled reports (``config.reports``), run by ``riffle scheduler``."""
    imports: list[ScheduledImportSpec] = Field(default_factory=list)
    """Scheduled imports (``config.imports``), run by ``riffle scheduler``."""

    def metric(self, name: str) -> MetricSpec | None:
        """The metric called ``name``, if the spec has one."""
        return next((m for m in self.metrics if m.name == name), None)

    def ratio(self, name: str) -> RatioSpec | None:
        """The ratio metric called ``name``, if the spec has one."""
        return next((r for r in self.ratios if r.name == name), None)

    def zone_of(self, tenant: str) -> str:
        """The IANA time zone of ``tenant``'s calendar."""
        listed = self.tenants.get(tenant)
        return self.time_zone if listed is None else listed.time_zone


def load_spec(path: str | Path) -> PipelineSpec:
    """Load and check a spec file; raise :class:`SpecError` naming file, line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec: {exc.strerror}") from exc
    return parse_spec(text, source=str(path), base=path.parent)


def parse_spec(text: str, source: str = "<spec>", base: Path | None = None) -> PipelineSpec:
    """Parse spec text; ``source`` names it in error messages, relative paths in it (mapping
    files, local import sources) are read from ``base`` (default: the working directory)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 0
        raise SpecError(f"{source}:{line}: not valid YAML: {exc.problem}") from exc
    if not isinstance(data, dict) or node is None:
        raise SpecError(f"{source}:1: a spec is a mapping with event_types and metrics")
    lines = dict(node_lines(node, ()))
    try:
        spec = PipelineSpec.model_validate(data, context={SPEC_DIR: base or Path()})
    except ValidationError as exc:
        problems = [(untag(tuple(err["loc"])), err["msg"]) for err in exc.errors()]
        raise SpecError(_describe(source, lines, problems)) from exc
    problems = list(_reference_problems(spec))
    if problems:
        raise SpecError(_describe(source, lines, problems))
    return spec


def _reference_problems(spec: PipelineSpec) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Cross-references pydantic cannot see: unknown names, duplicates, missing values."""
    for name in spec.event_types:
        if not _NAME_RE.match(name):
            yield ("event_types", name), f"event type name {name!r} must match {NAME}"
    for name in spec.dimensions:
        if not _NAME_RE.match(name):
            yield ("dimensions", name), f"dimension name {name!r} must match {NAME}"
    seen: set[str] = set()
    for i, metric in enumerate(spec.metrics):
        where: tuple[str | int, ...] = ("metrics", i)
        if metric.name in seen:
            yield (*where, "name"), f"metric {metric.name!r} is defined twice"
        seen.add(metric.name)
        for j, event in enumerate(metric.events):
            if event not in spec.event_types:
                known = ", ".join(sorted(spec.event_types))
                yield (*where, "events", j), f"unknown event type {event!r} (known: {known})"
        for j, dim in enumerate(metric.dimensions):
            if dim not in spec.dimensions:
                known = ", ".join(sorted(spec.dimensions)) or "none defined"
                yield (*where, "dimensions", j), f"unknown dimension {dim!r} (known: {known})"
        if len(set(metric.dimensions)) != len(metric.dimensions):
            yield (*where, "dimensions"), "a dimension is listed twice"
        if metric.aggregation == "count" and metric.value is not None:
            yield (*where, "value"), "a count metric takes no value field"
        if metric.late == "correct" and metric.window.kind == "session":
            yield (*where, "late"), "session windows cannot take corrections; use late: drop"
        if metric.aggregation != "count" and metric.value is None:
            yield (*where, "value"), f"a {metric.aggregation} metric needs a value field path"
        if metric.window.kind == "calendar":
            if metric.anomaly is not None or metric.forecast is not None:
                yield (*where, "window"), "calendar windows take no anomaly or forecast model"
            if any(rule.metric == metric.name for rule in spec.alerts):
                yield (*where, "window"), "alert rules cannot watch calendar windows"
        if metric.max_values is not None and metric.window.kind == "session":
            yield (*where, "max_values"), "session windows cannot be capped"
        if metric.max_values is not None and metric.late == "correct":
            yield (*where, "max_values"), "a capped metric cannot take corrections; use late: drop"
    yield from _ratio_problems(spec, seen)
    if spec.enrichment is not None:
        yield from enrichment_problems(spec.enrichment, spec.event_types)
    yield from alert_problems(spec.alerts, spec.metrics)
    yield from notification_problems(spec.notifications)
    yield from prediction_problems(spec.predictions, spec.event_types)
    dims = {m.name: m.dimensions for m in spec.metrics}
    dims |= {r.name: r.dimensions for r in spec.ratios}
    yield from report_problems(spec.reports, dims, spec.notifications)
    yield from import_problems(spec.imports, list(spec.event_types))


def _ratio_problems(
    spec: PipelineSpec, names: set[str]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """A ratio reads two additive metrics with the same window and shares their dimensions."""
    for i, ratio in enumerate(spec.ratios):
        where: tuple[str | int, ...] = ("ratios", i)
        if ratio.name in names:
            yield (*where, "name"), f"metric {ratio.name!r} is defined twice"
        names.add(ratio.name)
        parts = []
        for role in ("numerator", "denominator"):
            metric = spec.metric(getattr(ratio, role))
            if metric is None:
                yield (*where, role), f"unknown metric {getattr(ratio, role)!r}"
            elif metric.aggregation not in ("count", "sum"):
                yield (
                    (*where, role),
                    f"{metric.name} is a {metric.aggregation} metric; a ratio reads count "
                    "or sum metrics (they add up exactly)",
                )
            elif metric.max_values is not None:
                yield (
                    (*where, role),
                    f"{metric.name} is capped (max_values); a ratio needs every series of both",
                )
            else:
                parts.append(metric)
        if len(parts) != 2:
            continue
        numerator, denominator = parts
        if numerator.window != denominator.window or numerator.window.kind == "session":
            yield (
                (*where, "denominator"),
                f"{numerator.name} and {denominator.name} need the same window (not a session)",
            )
        for j, dim in enumerate(ratio.dimensions):
            if dim not in numerator.dimensions or dim not in denominator.dimensions:
                yield (
                    (*where, "dimensions", j),
                    f"dimension {dim!r} is not a dimension of both {numerator.name} and "
                    f"{denominator.name}",
                )


def _describe(
    source: str,
    lines: dict[tuple[str | int, ...], int],
    problems: list[tuple[tuple[str | int, ...], str]],
) -> str:
    out = []
    for loc, message in problems:
        line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), 1)
        field = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
        out.append(f"{source}:{line}: {field or '(top)'}: {message}")
    return "invalid pipeline spec\n" + "\n".join(out)
