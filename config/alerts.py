"""Alert rules in the spec: the ``alerts:`` list of a pipeline spec.

Four kinds of rule, told apart by ``kind``:

``threshold``  the window's value compared with ``value`` (``gt``, ``gte``, ``lt``, ...)
``change``     the change from the previous window of the same instance (or from the window
               ``period`` earlier: a day, a week), absolute or in %
``absence``    no final window of a series for ``after`` (in event time)
``anomaly``    the model stage's anomaly score at or above ``above`` (needs ``anomaly:`` on
               the metric)
``forecast``   the window's value outside the interval the forecaster gave for it (needs
               ``forecast:`` on the metric)

Every rule has ``for`` (how long the condition must hold, in event time,
before the alert fires), ``keep_firing_for``, ``severity``, ``labels`` and
``annotations`` — Jinja2 templates, compiled in a sandbox at load (see
:func:`compile_template`) and rendered for each transition by
:mod:`operators.alerts.annotations`. Problems are reported by
:func:`config.spec.parse_spec` with the file's line numbers like every other spec error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Literal, Protocol

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import Field, field_validator

from riffle.config.base import NAME, Strict
from riffle.config.durations import Duration

Comparison = Literal["gt", "gte", "lt", "lte", "eq", "ne"]
Severity = Literal["critical", "warning", "info"]
_LABEL = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
_LABEL_RE = re.compile(_LABEL)
RESERVED_LABELS: frozenset[str] = frozenset({"alertname", "severity", "metric", "tenant"})
"""Labels every alert carries; a rule's ``labels`` cannot set them."""


@lru_cache(maxsize=1)
def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


@lru_cache(maxsize=512)
def compile_template(source: str) -> jinja2.Template:
    """A sandboxed Jinja2 template (no attribute access to internals, no I/O).

    Raises :class:`jinja2.TemplateSyntaxError` for a template that does not parse.
    """
    return _environment().from_string(source)


class _Rule(Strict):
    name: str = Field(pattern=NAME)
    metric: str
    for_: Duration = Field(timedelta(0), alias="for")
    """How long (event time) the condition holds before Pending becomes Firing."""
    keep_firing_for: Duration = timedelta(0)
    """How long a Firing alert stays (Recovering) after its condition clears."""
    no_data_after: Duration | None = None
    """Event time without a window of the instance after which it turns NoData (off: None)."""
    severity: Severity = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    group_by: list[str] | None = None
    """Dimensions that tell instances apart; ``None``: every series is its own instance;
    ``[]``: one instance for the whole metric (windows of its series are merged)."""
    evaluate: Literal["final", "partial"] = "final"
    """``partial``: open windows' partial values may raise the alert early (never lower it);
    the final value decides (see :mod:`operators.alerts`)."""

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if not _LABEL_RE.match(key):
                raise ValueError(f"label name {key!r} must match {_LABEL}")
            if key in RESERVED_LABELS:
                raise ValueError(f"label {key!r} is set by Riffle; choose another name")
        return labels

    @field_validator("annotations")
    @classmethod
    def _templates(cls, annotations: dict[str, str]) -> dict[str, str]:
        for key, source in annotations.items():
            try:
                compile_template(source)
            except jinja2.TemplateSyntaxError as exc:
                raise ValueError(
                    f"annotation {key!r} is not a valid template: {exc.message}"
                ) from exc
        return annotations

    @property
    def for_ms(self) -> int:
        return int(self.for_.total_seconds() * 1000)

    @property
    def keep_firing_ms(self) -> int:
        return int(self.keep_firing_for.total_seconds() * 1000)

    @property
    def no_data_ms(self) -> int | None:
        if self.no_data_after is None:
            return None
        return int(self.no_data_after.total_seconds() * 1000)


class ThresholdRule(_Rule):
    """Fires while the window's value compares true with ``value``."""

    kind: Literal["threshold"]
    op: Comparison = "gt"
    value: float


class ChangeRule(_Rule):
    """Fires while the change from a reference window compares true with ``value``:
    ``mode: absolute`` (value - reference) or ``percent`` (100 · change / |reference|, not
    evaluated against a reference of 0). The reference is the instance's previous window,
    or with ``period`` the window that ended exactly ``period`` earlier (same minute
    yesterday with ``period: 1d``; not evaluated while that window is unknown)."""

    kind: Literal["change"]
    op: Comparison = "gt"
    value: float
    mode: Literal["absolute", "percent"] = "absolute"
    period: Duration | None = None

    @property
    def period_ms(self) -> int | None:
        return None if self.period is None else int(self.period.total_seconds() * 1000)


class AbsenceRule(_Rule):
    """Fires once an instance that had data has had none for ``after`` of event time."""

    kind: Literal["absence"]
    after: Duration


class AnomalyRule(_Rule):
    """Fires while the model stage's anomaly score of the window is at least ``above``."""

    kind: Literal["anomaly"]
    above: float = Field(gt=0)


class ForecastRule(_Rule):
    """Fires while the window's value is outside the interval the forecaster issued for
    that window one window earlier (``side: above`` or ``below`` watch one edge only).
    Not evaluated before the forecaster has scored ``min_history`` one-step forecasts."""

    kind: Literal["forecast"]
    side: Literal["outside", "above", "below"] = "outside"
    min_history: int = Field(10, ge=0)


AlertRule = Annotated[
    ThresholdRule | ChangeRule | AbsenceRule | AnomalyRule | ForecastRule,
    Field(discriminator="kind"),
]


RULE_KINDS: frozenset[str] = frozenset({"threshold", "change", "absence", "anomaly", "forecast"})
PARTIAL_KINDS: frozenset[str] = frozenset({"threshold", "change"})
"""Kinds whose condition is defined on a partial value (``evaluate: partial``)."""


def untag(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop the rule kind pydantic puts in an error's location (``alerts.0.threshold.op``),
    so the location matches the YAML and finds its line."""
    if len(loc) > 2 and loc[0] == "alerts" and loc[2] in RULE_KINDS:
        return loc[:2] + loc[3:]
    return loc


class WatchedMetric(Protocol):
    """What :func:`rule_problems` reads of a metric (a :class:`config.spec.MetricSpec`);
    named here so this module needs nothing of the spec that holds its rules."""

    @property
    def name(self) -> str: ...
    @property
    def dimensions(self) -> Sequence[str]: ...
    @property
    def aggregation(self) -> str: ...
    @property
    def anomaly(self) -> object | None: ...
    @property
    def forecast(self) -> object | None: ...
    @property
    def window_ms(self) -> int: ...


def rule_problems(
    rules: Sequence[AlertRule], metrics: Sequence[WatchedMetric]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Cross-references of the ``alerts:`` list: metrics, dimensions, duplicates, models."""
    by_name = {m.name: m for m in metrics}
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        where: tuple[str | int, ...] = ("alerts", i)
        if rule.name in seen:
            yield (*where, "name"), f"alert rule {rule.name!r} is defined twice"
        seen.add(rule.name)
        metric = by_name.get(rule.metric)
        if metric is None:
            known = ", ".join(sorted(by_name))
            yield (*where, "metric"), f"unknown metric {rule.metric!r} (known: {known})"
            continue
        for j, dim in enumerate(rule.group_by or []):
            if dim not in metric.dimensions:
                known = ", ".join(metric.dimensions) or "none"
                yield (
                    (*where, "group_by", j),
                    f"{dim!r} is not a dimension of metric {metric.name!r} (has: {known})",
                )
        merges = rule.group_by is not None and set(rule.group_by) != set(metric.dimensions)
        if merges and metric.aggregation in ("distinct", "quantiles", "top_k"):
            yield (
                (*where, "group_by"),
                f"a {metric.aggregation} metric's series cannot be merged by an alert;"
                " group by all its dimensions or leave group_by out",
            )
        if isinstance(rule, AnomalyRule):
            if metric.anomaly is None:
                yield (*where, "metric"), f"metric {metric.name!r} has no anomaly: block to score"
            if merges:
                yield (*where, "group_by"), "anomaly rules apply per series; leave group_by out"
        if isinstance(rule, ForecastRule):
            if metric.forecast is None:
                yield (*where, "metric"), f"metric {metric.name!r} has no forecast: block"
            if merges:
                yield (*where, "group_by"), "forecast rules apply per series; leave group_by out"
        period = rule.period_ms if isinstance(rule, ChangeRule) else None
        if period is not None and (period <= 0 or period % metric.window_ms):
            yield (*where, "period"), "period must be a positive multiple of the window"
        if rule.evaluate == "partial" and rule.kind not in PARTIAL_KINDS:
            kinds = ", ".join(sorted(PARTIAL_KINDS))
            yield (*where, "evaluate"), f"only {kinds} rules can evaluate partial windows"
        if isinstance(rule, AbsenceRule) and rule.after.total_seconds() * 1000 < metric.window_ms:
            yield (*where, "after"), "absence 'after' must be at least the metric's window"
