"""A report's figures as HTML (Jinja2), PDF (Chromium) and a plain-text summary.

The bundled template (``templates/report.html.j2``) shows each metric's value,
its change against the previous period, a chart of the period (ECharts, inlined
from the page's vendored copy, drawn only in the PDF) and its top movers, then
the period's anomalies and alert transitions. A report's own ``template:`` is
rendered with the same context:

* ``title``, ``report``, ``link`` (the dashboard over the period, or none),
  ``period_label``, ``previous_label``, ``generated`` (ms);
* ``figures``: :class:`~api.reports.figures.Figures` (``metrics``, ``anomalies``,
  ``alerts``, counts, ``start``/``end`` in ms, ``zone``);
* ``charts`` (true in the PDF), ``echarts_js`` and ``chart_data`` for charts;
* filters ``num``, ``pct``, ``signed``, ``arrow``, ``trend``, ``when`` (ms →
  local time of the tenant) and ``labels``.

Templates are sandboxed (``jinja2.sandbox``) and HTML-escaped. Chromium prints
the document once it has loaded and no element carries ``data-charts-pending``
(the bundled template sets it until its charts are drawn).
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from riffle.api.reports.figures import DAY_MS, Figures, MetricFigures
from riffle.api.routes.ui import STATIC_DIR
from riffle.config.errors import RiffleError

TEMPLATES = Path(__file__).with_name("templates")
DEFAULT_TEMPLATE = "report.html.j2"
ECHARTS = STATIC_DIR / "vendor" / "echarts-6.1.0" / "echarts.min.js"


class ReportTemplateError(RiffleError):
    """A report's template is missing or does not render."""


@cache
def _echarts() -> str:
    return ECHARTS.read_text(encoding="utf-8")


def _num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if abs(value) >= 1000 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3g}"


def _signed(value: float | None) -> str:
    return "–" if value is None else ("+" if value > 0 else "") + _num(value)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:+.1f} %"


def _arrow(value: float | None) -> str:
    return "" if not value else ("▲" if value > 0 else "▼")


def _trend(value: float | None) -> str:
    return "flat" if not value else ("up" if value > 0 else "down")


def _labels(value: Any) -> str:
    if not isinstance(value, dict):
        return str(value or "")
    return ", ".join(f"{k}={v}" for k, v in sorted(value.items()) if k not in ("tenant",))


def period_label(start: int, end: int, zone: str) -> str:
    """``Thu 3 Dec 2026``, ``Mon 30 Nov - Sun 6 Dec 2026`` (with an en dash),
    ``November 2026`` or a range of times, on the tenant's clock."""
    tz = ZoneInfo(zone)
    first = datetime.fromtimestamp(start / 1000, tz)
    last = datetime.fromtimestamp(end / 1000, tz)
    midnight = first.time() == last.time() == datetime.min.time()
    if midnight and first.day == 1 and last.day == 1 and (last - first).days in range(28, 32):
        return first.strftime("%B %Y")
    if midnight and (last - first).days == 1:
        return first.strftime("%a %-d %b %Y")
    if midnight:
        before = datetime.fromtimestamp((end - DAY_MS) / 1000, tz)
        return f"{first.strftime('%a %-d %b')} – {before.strftime('%a %-d %b %Y')}"
    return f"{first.strftime('%-d %b %Y %H:%M')} – {last.strftime('%-d %b %Y %H:%M')}"


def _environment(folder: Path, zone: str) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=FileSystemLoader([str(folder), str(TEMPLATES)]),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
    )
    tz = ZoneInfo(zone)

    def when(ms: int | None) -> str:
        if ms is None:
            return "–"
        return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M")

    env.filters.update(
        num=_num, pct=_pct, signed=_signed, arrow=_arrow, trend=_trend, labels=_labels, when=when
    )
    return env


def render_html(
    figures: Figures,
    *,
    report: str,
    title: str,
    link: str | None,
    charts: bool,
    template: Path | None = None,
) -> str:
    """The report as an HTML document (``template``: a report's own, else the bundled one).

    Raises :class:`ReportTemplateError` when the template is missing or fails.
    """
    folder = TEMPLATES if template is None else template.parent
    name = DEFAULT_TEMPLATE if template is None else template.name
    if template is not None and not template.is_file():
        raise ReportTemplateError(f"report template {template} does not exist")
    env = _environment(folder, figures.zone)
    chart_data = {
        str(i): [[env.filters["when"](t), v] for t, v in m.series]
        for i, m in enumerate(figures.metrics)
    }
    previous = period_label(figures.previous_start, figures.previous_end, figures.zone)
    try:
        return env.get_template(name).render(
            title=title,
            report=report,
            link=link,
            figures=figures,
            period_label=period_label(figures.start, figures.end, figures.zone),
            previous_label=previous,
            generated=int(time.time() * 1000),
            charts=charts,
            echarts_js=Markup(_echarts()) if charts else "",  # noqa: S704 - our vendored file
            chart_data=chart_data,
        )
    except TemplateError as exc:
        raise ReportTemplateError(f"report template {name}: {exc}") from exc


def _line(m: MetricFigures) -> str:
    unit = f" {m.unit}" if m.unit else ""
    change = (
        f" ({_arrow(m.change)} {_pct(m.change_pct) or _signed(m.change)} vs {_num(m.previous)})"
        if m.change is not None
        else f" (before: {_num(m.previous)})"
    )
    return f"*{m.name}*: {_num(m.value)}{unit}{change}"


def summary_text(figures: Figures, title: str) -> str:
    """The plain-text summary (Slack mrkdwn-friendly): a line per metric, its biggest mover,
    the anomaly and alert counts."""
    label = period_label(figures.start, figures.end, figures.zone)
    lines = [f"{title} — {label} ({figures.zone})", ""]
    for m in figures.metrics:
        lines.append(_line(m))
        if m.movers:
            top = m.movers[0]
            change = _signed(top["change"])
            lines.append(f"    biggest mover by {m.movers_by}: {top['value']} {change}")
    lines += [
        "",
        f"{figures.anomaly_count} anomalies, {figures.alert_count} alert transitions.",
    ]
    return "\n".join(lines)
