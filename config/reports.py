"""Scheduled reports in the spec: the ``reports:`` section of a pipeline spec.

::

    reports:
      - name: daily-shop                 # unique; `riffle reports run daily-shop`
        title: Web shop, yesterday
        tenant: demo                     # default RIFFLE_DEFAULT_TENANT
        schedule: "0 8 * * *"            # cron, on the tenant's wall clock (time_zone)
        period: day                      # hour | day | week | month | a duration (24h, 7d)
        dashboard: web-shop              # the dashboard's metrics, and a link to it
        metrics: [revenue]               # or/and named metrics (a template needs some)
        template: reports/weekly.html.j2 # optional Jinja2 template (next to the spec)
        top_by: country                  # the dimension of top movers (default: each
                                         # metric's first)
        receivers: [shop-team]           # receivers of notifications:
        link_expires: 30d                # the dashboard link in the report

A run due at T reports on the last whole ``period`` before T in the tenant's
zone (``day`` at 08:00: yesterday, midnight to midnight), against the period
before it. Receivers are those of ``notifications:``; a report goes to their
email (PDF attached), Slack (summary and link) and webhook (figures, link and
the PDF) channels — Alertmanager takes alerts only, so a receiver with
nothing else cannot take reports. Cross-references are checked by
:func:`report_problems`, which :func:`config.spec.parse_spec` turns into
``file:line`` errors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from riffle.config.durations import Duration
from riffle.config.notifications import NotificationsSpec
from riffle.config.schedules import Cron, Period

REPORT_CHANNELS = ("webhook", "slack", "email")
"""Channel kinds that carry reports (``sinks.channels``: ``carries_reports``)."""


class ReportSpec(BaseModel):
    """One scheduled report."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    title: str = Field("", max_length=200)
    tenant: str | None = Field(None, min_length=1, max_length=64)
    """The tenant whose figures the report shows (default ``RIFFLE_DEFAULT_TENANT``)."""
    schedule: Cron
    period: Period = "day"
    dashboard: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    metrics: list[str] = Field(default_factory=list, max_length=50)
    template: str | None = Field(None, min_length=1)
    top_by: str | None = None
    top: int = Field(5, ge=1, le=50)
    """Top movers listed per metric."""
    receivers: list[str] = Field(min_length=1)
    link_expires: Duration = timedelta(days=30)

    @field_validator("link_expires")
    @classmethod
    def _link(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(days=366):
            raise ValueError("link_expires lies between 1m and 366d")
        return value

    @model_validator(mode="after")
    def _shows_something(self) -> ReportSpec:
        if self.dashboard is None and not self.metrics:
            raise ValueError("a report names a dashboard, metrics, or both")
        return self

    @property
    def heading(self) -> str:
        """The title, or the name when none was given."""
        return self.title or self.name


def report_problems(
    reports: Sequence[ReportSpec],
    metrics: dict[str, list[str]],
    notifications: NotificationsSpec | None,
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Names a report uses that the spec lacks: metrics (``metrics`` maps each metric and
    ratio to its dimensions), the top-movers dimension, receivers, report-capable channels;
    and names used twice."""
    names: list[str] = []
    for i, report in enumerate(reports):
        where: tuple[str | int, ...] = ("reports", i)
        if report.name in names:
            yield (*where, "name"), f"report {report.name!r} is defined twice"
        names.append(report.name)
        for j, metric in enumerate(report.metrics):
            if metric not in metrics:
                yield (*where, "metrics", j), f"unknown metric {metric!r}"
        if report.top_by is not None and not any(
            report.top_by in metrics.get(m, []) for m in report.metrics or metrics
        ):
            yield (*where, "top_by"), f"no metric of the report has dimension {report.top_by!r}"
        for j, name in enumerate(report.receivers):
            receiver = None if notifications is None else notifications.receiver(name)
            if receiver is None:
                yield (
                    (*where, "receivers", j),
                    f"unknown receiver {name!r} (receivers are defined under notifications:)",
                )
            elif not set(receiver.channels) & set(REPORT_CHANNELS):
                yield (
                    (*where, "receivers", j),
                    f"receiver {name!r} has no channel that takes reports "
                    f"({', '.join(REPORT_CHANNELS)})",
                )
