"""Reports as a job kind of the scheduler: render a report for its period and deliver it.

One attempt at a run (:meth:`ReportJobs.run`):

1. the period: the last whole ``period`` before the run's due time in the tenant's
   zone (a manual run carries its own in ``details["period"]``), and the one before;
2. the metrics: the report's ``metrics``, else its dashboard's; the dashboard link
   is a share link over the period (made once per run, kept in the details);
3. the figures (:mod:`api.reports.figures`), the HTML and the PDF (Chromium), the
   text summary (:mod:`api.reports.render`);
4. one delivery per report-carrying channel of each receiver, with the channel's
   retries (:func:`sinks.channels.base.deliver_report`); each is recorded in
   ``details["deliveries"]`` with its status, attempts and error.

An attempt with an undelivered channel fails (:class:`JobFailedError`), and the
scheduler retries the run later with backoff; the retry re-sends only to the
channels that have not accepted it yet, with the same dedup key
(``{run id}:{receiver}:{channel}``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from riffle.api.render import Renderer
from riffle.api.reports.figures import Figures, Sources, period_figures
from riffle.api.reports.render import render_html, summary_text
from riffle.api.share import sign
from riffle.config.errors import RiffleError
from riffle.config.reports import ReportSpec
from riffle.config.settings import Settings
from riffle.config.spec import PipelineSpec
from riffle.operators.schedule import Job, JobFailedError, period_before, previous_span
from riffle.sinks.channels.base import Attachment, Channel, ReportMessage, deliver_report
from riffle.sinks.channels.registry import build_receiver
from riffle.sinks.redis.schedule import Run
from riffle.sinks.redis.shares import ShareStore
from riffle.sinks.warehouse.dashboards import DashboardStore

KIND = "report"


class ReportJobError(RiffleError):
    """A report cannot be made (unknown report or dashboard, a template error, no browser)."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


@dataclass(frozen=True)
class Rendered:
    """One report made for one period."""

    figures: Figures
    title: str
    link: str | None
    html: str
    pdf: bytes
    text: str
    filename: str


class ReportMetrics:
    """``riffle_report_*``: deliveries by channel and outcome, time to make a report."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "riffle_report_deliveries",
            "Report deliveries by channel kind and outcome (delivered, dead).",
            ["channel", "outcome"],
            registry=registry,
        )
        self.build = Histogram(
            "riffle_report_build_duration_seconds",
            "Time to make one report: figures, HTML and PDF.",
            buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
            registry=registry,
        )


class ReportJobs:
    """The ``report`` job kind over the spec's ``reports:``."""

    kind = KIND

    def __init__(
        self,
        settings: Settings,
        spec: PipelineSpec,
        sources: Sources,
        renderer: Renderer,
        dashboards: DashboardStore,
        shares: ShareStore,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.sources = sources
        self.renderer = renderer
        self.dashboards = dashboards
        self.shares = shares
        self.environ = os.environ if environ is None else environ
        self.clock = clock
        self.metrics = ReportMetrics(registry)

    def tenant_of(self, report: ReportSpec) -> str:
        return report.tenant or self.settings.default_tenant

    def jobs(self) -> Sequence[Job]:
        return [
            Job(KIND, r.name, self.tenant_of(r), r.schedule, self.spec.zone_of(self.tenant_of(r)))
            for r in self.spec.reports
        ]

    def report(self, name: str) -> ReportSpec:
        """The spec's report called ``name``; :class:`ReportJobError` naming the known ones."""
        found = next((r for r in self.spec.reports if r.name == name), None)
        if found is None:
            known = ", ".join(r.name for r in self.spec.reports) or "none"
            raise ReportJobError(f"no report {name!r} in the spec (known: {known})")
        return found

    def span_of(self, report: ReportSpec, run: Run) -> tuple[int, int]:
        """The period ``run`` reports on."""
        given = run.details.get("period")
        if given:
            return int(given["start"]), int(given["end"])
        zone = self.spec.zone_of(self.tenant_of(report))
        return period_before(report.period, run.due, zone)

    def run(self, run: Run) -> dict[str, Any]:
        """One attempt (module doc); :class:`JobFailedError` with the details so far when the
        report cannot be made or a channel did not take it."""
        details = dict(run.details)
        try:
            report = self.report(run.job)
            span = self.span_of(report, run)
            details["period"] = {"start": span[0], "end": span[1]}
            made = self.make(report, span, details)
            details["bytes"] = len(made.pdf)
            details = self.deliver(report, run.id, made, details)
        except RiffleError as exc:  # no dashboard, a template, the browser, a store, a secret
            raise JobFailedError(str(exc), details) from exc
        failed = [d for d in details["deliveries"] if d["status"] != "delivered"]
        if failed:
            names = ", ".join(f"{d['receiver']}/{d['channel']}" for d in failed)
            raise JobFailedError(f"not delivered to {names}: {failed[0]['error']}", details)
        return details

    def make(self, report: ReportSpec, span: tuple[int, int], details: dict[str, Any]) -> Rendered:
        """Figures, HTML, PDF and summary of ``report`` over ``span``; a dashboard link is
        made once and kept in ``details["link"]``."""
        began = time.perf_counter()
        tenant = self.tenant_of(report)
        zone = self.spec.zone_of(tenant)
        metrics = list(report.metrics)
        link = details.get("link")
        if report.dashboard is not None:
            stored = self.dashboards.get(tenant, report.dashboard)
            if stored is None:
                raise ReportJobError(f"tenant {tenant!r} has no dashboard {report.dashboard!r}")
            panels = [p.query.metric for p in stored.dashboard.panels]
            metrics += [m for m in dict.fromkeys(panels) if m not in metrics]
            if link is None:
                link = details["link"] = self._link(report, tenant, span)
        previous = previous_span(span[0], span[1], report.period, zone)
        figures = period_figures(
            self.sources, tenant, metrics, span, previous, top_by=report.top_by, top=report.top
        )
        template = None
        if report.template is not None:
            template = Path(report.template)
            if not template.is_absolute():
                template = self.settings.spec.resolve().parent / template
        title = report.heading
        html = render_html(
            figures, report=report.name, title=title, link=link, charts=False, template=template
        )
        printable = render_html(
            figures, report=report.name, title=title, link=link, charts=True, template=template
        )
        pdf = self.renderer.html_pdf(printable)
        self.metrics.build.observe(time.perf_counter() - began)
        day = datetime.fromtimestamp(span[0] / 1000, ZoneInfo(zone)).strftime("%Y-%m-%d")
        return Rendered(
            figures=figures,
            title=title,
            link=link,
            html=html,
            pdf=pdf,
            text=summary_text(figures, title),
            filename=f"{report.name}-{day}.pdf",
        )

    def deliver(
        self, report: ReportSpec, run_id: str, made: Rendered, details: dict[str, Any]
    ) -> dict[str, Any]:
        """Send ``made`` to every channel of the report's receivers that has not accepted it
        yet; each delivery's outcome lands in ``details["deliveries"]``."""
        done = {
            (d["receiver"], d["channel"]): d
            for d in details.get("deliveries", [])
            if d["status"] == "delivered"
        }
        deliveries = list(done.values())
        for receiver, channels in self._channels(report).items():
            for channel in channels:
                if (receiver, channel.kind) in done or not channel.carries_reports:
                    continue
                message = self._message(report, run_id, receiver, channel.kind, made)
                error, attempts = deliver_report(channel, message)
                outcome = "delivered" if error is None else "dead"
                self.metrics.deliveries.labels(channel.kind, outcome).inc()
                deliveries.append(
                    {
                        "receiver": receiver,
                        "channel": channel.kind,
                        "status": outcome,
                        "attempts": attempts,
                        "error": error,
                        "at": int(self.clock() * 1000),
                    }
                )
        return {**details, "deliveries": deliveries}

    def _channels(self, report: ReportSpec) -> dict[str, list[Channel]]:
        notifications = self.spec.notifications
        assert notifications is not None  # the spec refuses reports without receivers
        out = {}
        for name in report.receivers:
            receiver = notifications.receiver(name)
            assert receiver is not None
            out[name] = build_receiver(receiver, self.environ)
        return out

    def _message(
        self, report: ReportSpec, run_id: str, receiver: str, kind: str, made: Rendered
    ) -> ReportMessage:
        figures = made.figures
        return ReportMessage(
            dedup_key=f"{run_id}:{receiver}:{kind}",
            report=report.name,
            tenant=figures.tenant,
            title=made.title,
            period_start=figures.start,
            period_end=figures.end,
            text=made.text,
            html=made.html,
            figures=figures.to_dict(),
            link=made.link,
            attachments=(Attachment(made.filename, "application/pdf", made.pdf),),
        )

    def _link(self, report: ReportSpec, tenant: str, span: tuple[int, int]) -> str:
        assert report.dashboard is not None
        share = self.shares.create(
            tenant,
            report.dashboard,
            str(span[0]),
            str(span[1]),
            int(report.link_expires.total_seconds()),
            f"report:{report.name}",
        )
        token = sign(self.settings.share_secret.get_secret_value(), share)
        return f"{self.settings.base_url}/ui/shared#{token}"


def report_jobs(
    settings: Settings, registry: CollectorRegistry = REGISTRY, renderer: Renderer | None = None
) -> ReportJobs:
    """The report kind for ``settings``' spec, over its Redis and warehouse (connecting on
    first use), rendering with ``renderer`` (default: a browser of its own)."""
    import redis

    from riffle.api.deps import locked_dashboards
    from riffle.config.spec import load_spec
    from riffle.sinks.redis.windows import RedisWindowStore
    from riffle.sinks.warehouse.engines import open_warehouse

    spec = load_spec(settings.spec)
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2.0)
    hot_ttl = int(spec.retention.hot.total_seconds())
    warehouse = open_warehouse(settings, spec.retention.warehouse)
    sources = Sources(
        hot=RedisWindowStore(client, settings.redis_prefix, hot_ttl),
        warehouse=warehouse,
        spec=spec,
        hot_horizon_s=settings.hot_horizon_seconds,
        hot_ttl_s=hot_ttl,
    )
    return ReportJobs(
        settings,
        spec,
        sources,
        renderer or Renderer(registry),
        locked_dashboards(client, settings.redis_prefix, warehouse),
        ShareStore(client, settings.redis_prefix),
        registry=registry,
    )
