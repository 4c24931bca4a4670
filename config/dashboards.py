"""Dashboards as data: the document a dashboard is, loaded from YAML or JSON and checked.

A dashboard is panels (each a query of the metrics API and a way to draw
it), their layout on a 12-column grid, variables (dimensions whose chosen
values filter every panel that has that dimension) and a default time
range. The same document is what ``/v1/dashboards`` stores, what
``dashboards/*.yaml`` provisions and what the page edits.
:func:`check_dashboard` checks it against a pipeline spec: metrics and
dimensions must exist, so a dashboard never shows an error panel for a typo.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from riffle.config.errors import SpecError
from riffle.config.spec import MetricSpec, PipelineSpec

PanelType = Literal[
    "timeseries", "area", "bar", "stat", "table", "topk", "quantiles", "forecast", "heatmap"
]
"""How a panel draws its query: lines, stacked areas, bars, a big number with a
sparkline, a table, a top-k list, quantile bands, a forecast interval band, an
hour-of-day × weekday heatmap."""

QueryKind = Literal["query", "top"]

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_RELATIVE = re.compile(r"^(now|-\d+(ms|s|m|h|d))$")


MAX_PANELS = 50
"""Most panels one dashboard holds."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PanelQuery(_Strict):
    """A query of the metrics API: ``/v1/metrics/{metric}/query`` or ``/top``."""

    kind: QueryKind = "query"
    metric: str = Field(min_length=1, max_length=64)
    by: list[str] = Field(default_factory=list, max_length=3)
    """Breakdown dimensions (``/query``), or the one ranked dimension (``/top``)."""
    step: Literal["1m", "1h", "1d"] | None = None
    compare: Literal["previous_period"] | None = None
    limit: int | None = Field(None, ge=1, le=100)
    filters: dict[str, list[str]] = Field(default_factory=dict)


class Layout(_Strict):
    """Place on a 12-column grid; rows are 80 px."""

    x: int = Field(0, ge=0, le=11)
    y: int = Field(0, ge=0, le=1000)
    w: int = Field(6, ge=1, le=12)
    h: int = Field(4, ge=1, le=20)

    @model_validator(mode="after")
    def _fits(self) -> Layout:
        if self.x + self.w > 12:
            raise ValueError(f"x + w must be at most 12 (got {self.x} + {self.w})")
        return self


class Panel(_Strict):
    """One chart: its title, its query, how it is drawn and where."""

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    title: str = Field(min_length=1, max_length=120)
    type: PanelType = "timeseries"
    query: PanelQuery
    layout: Layout = Field(default_factory=Layout)
    unit: str | None = Field(None, max_length=32)
    live: bool = True
    """Follow the live stream (``/v1/stream``) between refreshes."""


class Variable(_Strict):
    """A dimension whose chosen values filter every panel whose metric has it."""

    name: str = Field(min_length=1, max_length=64)
    label: str | None = Field(None, max_length=64)
    default: list[str] = Field(default_factory=list)


class TimeRange(_Strict):
    """Relative (``-1h``, ``now``) or absolute (RFC 3339 / epoch ms) bounds."""

    start: str = "-1h"
    end: str = "now"


class Dashboard(_Strict):
    """A dashboard document (what is stored, provisioned and exported)."""

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    title: str = Field(min_length=1, max_length=120)
    description: str = Field("", max_length=2000)
    time: TimeRange = Field(default_factory=TimeRange)
    refresh: Literal["off", "5s", "10s", "30s", "1m", "5m"] = "30s"
    variables: list[Variable] = Field(default_factory=list, max_length=10)
    panels: list[Panel] = Field(default_factory=list, max_length=MAX_PANELS)

    @field_validator("panels")
    @classmethod
    def _unique_panels(cls, panels: list[Panel]) -> list[Panel]:
        ids = [p.id for p in panels]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"panel ids must be unique (repeated: {', '.join(twice)})")
        return panels

    def metrics(self) -> set[str]:
        """Every metric a panel of this dashboard reads (what a share link may query)."""
        return {p.query.metric for p in self.panels}

    def panel(self, panel_id: str) -> Panel | None:
        """The panel ``panel_id``, or ``None``."""
        return next((p for p in self.panels if p.id == panel_id), None)


def check_dashboard(dashboard: Dashboard, spec: PipelineSpec) -> list[str]:
    """What in ``dashboard`` does not fit ``spec`` (unknown metrics, dimensions), as messages."""
    problems: list[str] = []
    names = {m.name for m in spec.metrics} | {r.name for r in spec.ratios}
    for panel in dashboard.panels:
        query = panel.query
        where = f"panels[{panel.id}]"
        if query.metric not in names:
            problems.append(f"{where}.query.metric: unknown metric {query.metric!r}")
            continue
        metric = spec.metric(query.metric)
        ratio = spec.ratio(query.metric)
        dims = set(metric.dimensions if metric else ratio.dimensions if ratio else ())
        problems += [
            f"{where}.query: {query.metric!r} has no dimension {name!r}"
            for name in [*query.by, *query.filters]
            if name not in dims
        ]
        if query.kind == "top" and len(query.by) != 1:
            problems.append(f"{where}.query.by: top ranks exactly one dimension")
        if panel.type in ("quantiles",) and (metric is None or metric.aggregation != "quantiles"):
            problems.append(f"{where}.type: quantile bands need a quantiles metric")
    problems += [
        f"variables[{v.name}]: unknown dimension"
        for v in dashboard.variables
        if v.name not in spec.dimensions
    ]
    return problems


def parse_dashboard(data: Any, source: str = "<dashboard>") -> Dashboard:
    """A :class:`Dashboard` from parsed YAML/JSON; :class:`SpecError` naming each problem."""
    try:
        return Dashboard.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{source}: {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise SpecError("invalid dashboard\n" + "\n".join(lines)) from exc


def load_dashboards(folder: Path, spec: PipelineSpec) -> list[Dashboard]:
    """Every ``*.yaml`` dashboard in ``folder``, checked against ``spec``, sorted by id.

    Raises :class:`SpecError` listing every file's problems.
    """
    found: list[Dashboard] = []
    problems: list[str] = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            dashboard = parse_dashboard(yaml.safe_load(path.read_text()), str(path))
        except (SpecError, yaml.YAMLError) as exc:
            problems.append(str(exc))
            continue
        problems += [f"{path}: {p}" for p in check_dashboard(dashboard, spec)]
        found.append(dashboard)
    ids = [d.id for d in found]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    problems += [f"{folder}: dashboard id {i!r} twice" for i in twice]
    if problems:
        raise SpecError("\n".join(problems))
    return sorted(found, key=lambda d: d.id)


def is_relative(bound: str) -> bool:
    """Whether a time bound is relative to now (``now``, ``-15m``)."""
    return bool(_RELATIVE.match(bound))


def starter_dashboards(spec: PipelineSpec, dashboard_id: str = "overview") -> list[Dashboard]:
    """First dashboards for any spec: per metric a row of a big number, a chart (quantile
    bands for quantile metrics) and a top-k panel by its first dimension, with a variable
    for each of the (at most three) dimensions most metrics share.

    A dashboard holds at most :data:`MAX_PANELS` panels: a spec with more rows is split
    into several dashboards (``overview``, ``overview-2``, …), a metric's row never cut
    in two; none is dropped.
    """
    rows = [_starter_row(metric) for metric in spec.metrics]
    pages: list[list[list[Panel]]] = [[]]
    for row in rows:
        if sum(len(r) for r in pages[-1]) + len(row) > MAX_PANELS:
            pages.append([])
        pages[-1].append(row)
    counts: dict[str, int] = {}
    for metric in spec.metrics:
        for dim in metric.dimensions:
            counts[dim] = counts.get(dim, 0) + 1
    shared = sorted((d for d, n in counts.items() if n > 1), key=lambda d: (-counts[d], d))[:3]
    out = []
    for number, page in enumerate(pages, start=1):
        panels = [
            p.model_copy(update={"layout": p.layout.model_copy(update={"y": 3 * y})})
            for y, row in enumerate(page)
            for p in row
        ]
        used = {d for m in spec.metrics if m.name in {p.query.metric for p in panels}
                for d in m.dimensions}  # fmt: skip
        suffix = "" if len(pages) == 1 else f" ({number}/{len(pages)})"
        out.append(
            Dashboard(
                id=dashboard_id if number == 1 else f"{dashboard_id}-{number}"[:64],
                title="Overview" + suffix,
                description="Generated by `riffle dashboards generate`: one row per metric.",
                variables=[Variable(name=d) for d in shared if d in used],
                panels=panels,
            )
        )
    return out


def _starter_row(metric: MetricSpec) -> list[Panel]:
    name = metric.name
    unit = metric.unit or None
    row = [
        Panel(
            id=f"{name}-now"[:64],
            title=f"{name}",
            type="stat",
            query=PanelQuery(metric=name, compare="previous_period"),
            layout=Layout(x=0, y=0, w=3, h=3),
            unit=unit,
        ),
        Panel(
            id=f"{name}-series"[:64],
            title=f"{name} over time",
            type="quantiles" if metric.aggregation == "quantiles" else "timeseries",
            query=PanelQuery(metric=name),
            layout=Layout(x=3, y=0, w=6 if metric.dimensions else 9, h=3),
            unit=unit,
        ),
    ]
    if metric.dimensions:
        row.append(
            Panel(
                id=f"{name}-top"[:64],
                title=f"{name} by {metric.dimensions[0]}",
                type="topk",
                query=PanelQuery(kind="top", metric=name, by=[metric.dimensions[0]], limit=5),
                layout=Layout(x=9, y=0, w=3, h=3),
                unit=unit,
            )
        )
    return row
