"""``riffle models``: the online models, replayed over stored windows."""

from __future__ import annotations

from typing import Annotated

import typer

from riffle.cli.common import clear_errors
from riffle.config.settings import get_settings

app = typer.Typer(help="The online models (docs/models.md).", no_args_is_help=True)


@app.command("backtest")
def models_backtest(
    metric: Annotated[str, typer.Option(help="The metric whose stored windows to replay.")],
    start: Annotated[str, typer.Option(help="From: RFC 3339, epoch ms, or -7d before now.")],
    end: Annotated[str, typer.Option(help="Until (exclusive); same forms, or now.")] = "now",
    detector: Annotated[
        str | None, typer.Option(help="Detector name (default: the metric's, else riffle).")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(min=0, max=1, help="Anomaly threshold (default: the spec's).")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Tenant (default RIFFLE_DEFAULT_TENANT).")
    ] = None,
    show: Annotated[
        str, typer.Option(help="Rows to list: flagged (warning, anomaly), anomaly, all, none.")
    ] = "flagged",
) -> None:
    """Replay a detector (and the metric's forecaster) over stored windows; print what it flags.

    Uses the same model classes as the dataflow's model stage, one series at
    a time, from the warehouse's final windows of the metric.
    """
    import time

    from riffle.api.times import parse_instant
    from riffle.config.models import AnomalySpec
    from riffle.config.spec import load_spec
    from riffle.operators.models.backtest import backtest
    from riffle.operators.models.registry import DETECTORS
    from riffle.sinks.warehouse.engines import open_warehouse

    if show not in ("flagged", "anomaly", "all", "none"):
        raise typer.BadParameter("one of flagged, anomaly, all, none", param_hint="--show")
    settings = get_settings()
    with clear_errors():
        spec = load_spec(settings.spec)
        found = spec.metric(metric)
        if found is None:
            raise typer.BadParameter(f"no metric named {metric!r}", param_hint="--metric")
        name = detector or (found.anomaly.detector if found.anomaly else "riffle")
        if name not in DETECTORS:
            known = ", ".join(sorted(DETECTORS))
            raise typer.BadParameter(
                f"unknown detector {name!r} ({known})", param_hint="--detector"
            )
        base = found.anomaly or AnomalySpec()
        limit = threshold if threshold is not None else base.threshold
        anomaly = AnomalySpec(detector=name, warning=min(base.warning, limit), threshold=limit)
        now = int(time.time() * 1000)
        try:
            start_ms, end_ms = parse_instant(start, now), parse_instant(end, now)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        series = open_warehouse(settings).read_series(
            tenant or settings.default_tenant, metric, start_ms, end_ms
        )
        report = backtest(
            series,
            metric=metric,
            window_ms=found.window_ms,
            anomaly=anomaly,
            forecast=found.forecast,
        )
    wanted = {"flagged": {"warning", "anomaly"}, "anomaly": {"anomaly"}, "none": set()}
    labels = wanted.get(show)
    rows = [f for f in report.flags if labels is None or f.label in labels]
    if rows:
        typer.echo(f"{'series':40} {'window start (UTC)':20} {'value':>12} {'score':>6}  label")
        for f in rows:
            at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(f.window_start / 1000))
            dims = ",".join(f"{k}={v}" for k, v in f.dims) or "(all)"
            typer.echo(f"{dims[:40]:40} {at:20} {f.value:12.4g} {f.score:6.3f}  {f.label}")
        typer.echo("")
    typer.echo(f"detector {report.detector}, threshold {report.threshold:g}")
    for s in report.series:
        dims = ",".join(f"{k}={v}" for k, v in s.dims) or "(all)"
        line = (
            f"{dims}: {s.windows} windows, {s.scored} scored, {s.warnings} warnings,"
            f" {s.anomalies} anomalies"
        )
        if s.smape is not None:
            line += (
                f"; forecast sMAPE {s.smape:.1f}% vs seasonal-naive {s.naive_smape:.1f}%,"
                f" coverage {s.coverage:.2f}"
            )
        typer.echo(line)
    total = sum(s.windows for s in report.series)
    typer.echo(f"total: {len(report.series)} series, {total} windows, {report.anomalies} anomalies")
