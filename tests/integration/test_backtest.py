"""``riffle models backtest`` over windows stored in a real DuckDB warehouse.

The replay must say what the stream said: the model stage run through
Bytewax over the same windows wrote the same scores and labels.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from riffle.cli import app
from riffle.config.models import AnomalySpec
from riffle.config.settings import get_settings
from riffle.config.spec import parse_spec
from riffle.dataflows.models import ModelStoreSink, ModelTelemetry, model_stage
from riffle.operators.models.backtest import backtest
from riffle.operators.records import WindowResult
from riffle.sinks.warehouse.duckdb import DuckDBWarehouse
from riffle.sinks.warehouse.model_results import ModelStore
from tests.integration.stores_support import valued
from tests.warehouse_fixtures import WarehouseTarget

MIN = 60_000
START = 1_700_006_400_000 - 1_700_006_400_000 % 86_400_000
SPEC = """
version: 1
event_types: {view: {}}
dimensions: {country: {path: props.country}}
metrics:
  - name: views
    events: [view]
    aggregation: count
    dimensions: [country]
    window: 5m
    anomaly: {}
    forecast: {horizon: 3}
"""
SPIKE = 600


def _windows() -> list[WindowResult]:
    rng = random.Random(8)
    out = []
    for i in range(700):
        start = START + i * 5 * MIN
        for country in ("de", "fr"):
            value = 100 + 40 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 3)
            if i == SPIKE and country == "de":
                value *= 3
            out.append(valued("views", (("country", country),), start, 5 * MIN, value))
    return out


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    db = tmp_path / "warehouse.duckdb"
    warehouse = DuckDBWarehouse(db)
    warehouse.init()
    warehouse.upsert_windows(_windows())
    monkeypatch.setenv("RIFFLE_SPEC", str(spec))
    monkeypatch.setenv("RIFFLE_WAREHOUSE", f"duckdb:///{db}")
    monkeypatch.setenv("RIFFLE_DEFAULT_TENANT", "t1")
    get_settings.cache_clear()
    yield db
    get_settings.cache_clear()


def test_backtest_cli_reports_the_spike_and_the_forecast_skill(stored: Path) -> None:
    result = CliRunner().invoke(
        app, ["models", "backtest", "--metric", "views", "--start", str(START), "--show", "anomaly"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["series", "window"]
    flagged = [line for line in lines[1:] if line.endswith("anomaly")]
    spike_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((START + SPIKE * 5 * MIN) / 1000))
    assert any(line.startswith("country=de") and spike_at in line for line in flagged)
    summary = [line for line in lines if line.startswith("country=") and "windows," in line]
    assert len(summary) == 2
    assert all("700 windows" in line and "forecast sMAPE" in line for line in summary)
    assert lines[-1].startswith("total: 2 series, 1400 windows")

    # A higher threshold flags fewer windows; an unknown detector is refused.
    strict = CliRunner().invoke(
        app,
        ["models", "backtest", "--metric", "views", "--start", str(START), "--threshold", "0.99"],
    )
    assert strict.exit_code == 0
    count = int(lines[-1].split(", ")[-1].split()[0])
    assert int(strict.stdout.splitlines()[-1].split(", ")[-1].split()[0]) < count
    bad = CliRunner().invoke(
        app, ["models", "backtest", "--metric", "views", "--start", "0", "--detector", "nope"]
    )
    assert bad.exit_code == 2 and "unknown detector" in bad.output
    unknown = CliRunner().invoke(app, ["models", "backtest", "--metric", "nope", "--start", "0"])
    assert unknown.exit_code == 2


def test_backtest_says_what_the_stream_said(stored: Path, tmp_path: Path) -> None:
    spec = parse_spec(SPEC)
    stream_db = tmp_path / "stream.duckdb"
    flow = Dataflow("backtest_vs_stream")
    results = op.input("in", flow, TestingSource(_windows(), batch_size=64))
    model_stage(
        results,
        spec,
        shards=3,
        sink=ModelStoreSink(stream_db),
        telemetry=ModelTelemetry(CollectorRegistry()),
    )
    run_main(flow)
    streamed = {
        (r["dims"], r["window_start"]): (r["score"], r["label"])
        for r in ModelStore(DuckDBWarehouse(stream_db)).anomalies("t1", 0, 10**13, limit=5000)
    }

    metric = spec.metric("views")
    assert metric is not None and metric.anomaly is not None
    series = DuckDBWarehouse(stored).read_series("t1", "views", 0, 10**13)
    report = backtest(
        series,
        metric="views",
        window_ms=metric.window_ms,
        anomaly=metric.anomaly,
        forecast=metric.forecast,
    )
    replayed = {
        (f'{{"country":"{dict(f.dims)["country"]}"}}', f.window_start): (f.score, f.label)
        for f in report.flags
    }
    assert len(replayed) == 1400
    assert replayed == streamed
    assert report.anomalies >= 1
    assert all(s.smape is not None and s.coverage is not None for s in report.series)
    # The baseline detectors run through the same path.
    gaussian = backtest(
        series,
        metric="views",
        window_ms=metric.window_ms,
        anomaly=AnomalySpec(detector="windowed_gaussian"),
        forecast=None,
    )
    assert gaussian.detector == "windowed_gaussian" and len(gaussian.flags) == 1400


def test_backtest_reads_either_warehouse_engine(
    warehouse_target: WarehouseTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    warehouse = warehouse_target.open()
    warehouse.init()
    windows = [w for w in _windows() if w.window_start < START + 300 * 5 * MIN]
    warehouse.upsert_windows(windows)
    monkeypatch.setenv("RIFFLE_SPEC", str(spec))
    monkeypatch.setenv("RIFFLE_WAREHOUSE", warehouse_target.url)
    if warehouse_target.endpoint is not None:
        monkeypatch.setenv("RIFFLE_BIGQUERY_ENDPOINT", warehouse_target.endpoint)
    monkeypatch.setenv("RIFFLE_DEFAULT_TENANT", "t1")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app, ["models", "backtest", "--metric", "views", "--start", str(START)]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("total: 2 series, 600 windows")
